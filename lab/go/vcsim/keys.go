package main

import (
	"fmt"
	"log"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Keyboard input through vCenter: VirtualMachine.PutUsbScanCodes, which govmomi's simulator does
// not implement (MethodNotFound). Packer's vsphere-iso `boot_command` and `govc vm.keystrokes` use
// it to answer the EFI boot loader's "Press any key to boot from CD or DVD". The lab records every
// key event with its wall-clock time so the guest twin can tell whether a key arrived while the
// prompt was showing (GET /vms/{moref}/keys).

// keyEvent is one recorded key press.
type keyEvent struct {
	At         float64 `json:"at"`           // Unix time in seconds
	UsbHidCode int32   `json:"usb_hid_code"` // as sent: (HID usage << 16) | 7
	HidUsage   int32   `json:"hid_usage"`    // e.g. 0x2c spacebar, 0x28 enter
}

const maxKeysPerVM = 200

// putUsbScanCodes answers VirtualMachine.PutUsbScanCodes (simulator.PutUsbScanCodesHook, added by
// patches/0005; the VM's lock is held by the simulator).
func (l *lab) putUsbScanCodes(ctx *simulator.Context, vm *simulator.VirtualMachine, req *types.PutUsbScanCodes) soap.HasFault {
	body := &methods.PutUsbScanCodesBody{}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		// vCenter refuses keyboard input to a VM that is not running.
		body.Fault_ = simulator.Fault(fmt.Sprintf("%s is %s", vm.Name, vm.Runtime.PowerState),
			&types.InvalidPowerState{RequestedState: types.VirtualMachinePowerStatePoweredOn, ExistingState: vm.Runtime.PowerState})
		return body
	}
	now := float64(time.Now().UnixNano()) / 1e9
	var got []keyEvent
	for _, e := range req.Spec.KeyEvents {
		got = append(got, keyEvent{At: now, UsbHidCode: e.UsbHidCode, HidUsage: e.UsbHidCode >> 16})
	}
	l.mu.Lock()
	if l.keys == nil {
		l.keys = map[string][]keyEvent{}
	}
	all := append(l.keys[vm.Self.Value], got...)
	if len(all) > maxKeysPerVM {
		all = all[len(all)-maxKeysPerVM:]
	}
	l.keys[vm.Self.Value] = all
	l.mu.Unlock()
	log.Printf("keys: %s (%s) %d key event(s)", vm.Self.Value, vm.Name, len(got))
	body.Res = &types.PutUsbScanCodesResponse{Returnval: int32(len(got))}
	return body
}

// keysOf lists the key events a VM received (oldest first).
func (l *lab) keysOf(moref string) ([]keyEvent, error) {
	if _, err := l.lookupVM(moref); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]keyEvent{}, l.keys[moref]...)
	return out, nil
}
