package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
	"sync"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/units"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// Names kept from vcsim's VPX model, so that anyone who knows vcsim recognises them.
const (
	datacenterName = "DC0"
	clusterName    = "DC0_C0"
	datastoreName  = "LocalDS_0"
	networkName    = "VM Network"
)

// inventory is what the control endpoint reports under GET /inventory.
type inventory struct {
	Datacenter        string            `json:"datacenter"`
	Cluster           string            `json:"cluster"`
	Hosts             []string          `json:"hosts"`
	Datastore         string            `json:"datastore"`
	DatastoreName     string            `json:"datastore_name"`
	DatastoreDir      string            `json:"datastore_dir"`
	Network           string            `json:"network"`
	NetworkName       string            `json:"network_name"`
	Folder            string            `json:"folder"`
	ResourcePool      string            `json:"resource_pool"`
	ChildResourcePool string            `json:"child_resource_pool,omitempty"`
	Template          string            `json:"template"`
	Workers           []string          `json:"workers"`
	WorkerIPs         map[string]string `json:"worker_ips"` // worker VM name -> its guest IP
	Morefs            map[string]string `json:"morefs"`     // inventory path -> moref value
}

type lab struct {
	m   *simulator.Model
	opt options
	inv inventory

	mu      sync.Mutex
	ready   bool
	faults  []*faultRule
	nextID  int
	pending map[*simulator.Context]*faultRule // task-mode faults armed for a request
	delays  map[string]int
	timeout string
	keys    map[string][]keyEvent // PutUsbScanCodes received, by VM moref
	calls   *callStats            // stats.go
}

func newLab(m *simulator.Model, o options) *lab {
	return &lab{m: m, opt: o, pending: map[*simulator.Context]*faultRule{}, delays: map[string]int{}, calls: newCallStats()}
}

func (l *lab) markReady() {
	l.mu.Lock()
	l.ready = true
	l.mu.Unlock()
}

func (l *lab) isReady() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ready
}

func randomSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	for range n {
		i, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b.WriteByte(alphabet[i.Int64()])
	}
	return b.String()
}

func (l *lab) inventorySummary() string {
	return fmt.Sprintf("folder %s, pool %s, datastore %s (%s), template %s, %d workers",
		l.inv.Folder, l.inv.ResourcePool, l.inv.Datastore, l.inv.DatastoreDir, l.inv.Template, len(l.inv.Workers))
}

// buildInventory turns the bare VPX model (DC0, cluster DC0_C0 with 3 hosts) into what an
// OpenShift IPI installation leaves behind, using the vSphere API through the in-process client.
func (l *lab) buildInventory(ctx context.Context) error {
	c, err := vim25.NewClient(ctx, l.m.Service)
	if err != nil {
		return err
	}
	finder := find.NewFinder(c)
	dc, err := finder.Datacenter(ctx, datacenterName)
	if err != nil {
		return err
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	cluster, err := finder.ClusterComputeResource(ctx, clusterName)
	if err != nil {
		return err
	}
	hosts, err := cluster.Hosts(ctx)
	if err != nil {
		return err
	}
	inv := &l.inv
	inv.Morefs = map[string]string{}
	inv.WorkerIPs = map[string]string{}
	inv.Datacenter = dc.InventoryPath
	inv.Cluster = cluster.InventoryPath
	inv.Morefs[inv.Datacenter] = dc.Reference().Value
	inv.Morefs[inv.Cluster] = cluster.Reference().Value
	for _, h := range hosts {
		name, err := h.ObjectName(ctx)
		if err != nil {
			return err
		}
		p := inv.Cluster + "/" + name
		inv.Hosts = append(inv.Hosts, p)
		inv.Morefs[p] = h.Reference().Value
	}

	// Datastore LocalDS_0 backed by our directory, mounted on every host (as vcsim's model does).
	var dsRef types.ManagedObjectReference
	for _, h := range hosts {
		dss, err := h.ConfigManager().DatastoreSystem(ctx)
		if err != nil {
			return err
		}
		ds, err := dss.CreateLocalDatastore(ctx, datastoreName, l.opt.datastoreDir)
		if err != nil {
			return fmt.Errorf("datastore %s on %s: %w", datastoreName, h.Reference().Value, err)
		}
		if dsRef.Value == "" { // later hosts get an empty reference back (simulator quirk)
			dsRef = ds.Reference()
		}
	}
	inv.DatastoreName = datastoreName
	inv.Datastore = inv.Datacenter + "/datastore/" + datastoreName
	inv.DatastoreDir = l.opt.datastoreDir
	inv.Morefs[inv.Datastore] = dsRef.Value

	network, err := finder.Network(ctx, networkName)
	if err != nil {
		return fmt.Errorf("network %q: %w", networkName, err)
	}
	inv.NetworkName = networkName
	inv.Network = inv.Datacenter + "/network/" + networkName
	inv.Morefs[inv.Network] = network.Reference().Value

	pool, err := cluster.ResourcePool(ctx)
	if err != nil {
		return err
	}
	inv.ResourcePool = inv.Cluster + "/Resources"
	inv.Morefs[inv.ResourcePool] = pool.Reference().Value
	if l.opt.childPool != "" {
		child, err := pool.Create(ctx, l.opt.childPool, types.DefaultResourceConfigSpec())
		if err != nil {
			return fmt.Errorf("child pool: %w", err)
		}
		inv.ChildResourcePool = inv.ResourcePool + "/" + l.opt.childPool
		inv.Morefs[inv.ChildResourcePool] = child.Reference().Value
	}

	folder, err := folders.VmFolder.CreateFolder(ctx, l.opt.infraID)
	if err != nil {
		return fmt.Errorf("folder: %w", err)
	}
	inv.Folder = inv.Datacenter + "/vm/" + l.opt.infraID
	inv.Morefs[inv.Folder] = folder.Reference().Value

	// The RHCOS template the installer imports from the OVA: <infra_id>-rhcos.
	backing, err := network.EthernetCardBackingInfo(ctx)
	if err != nil {
		return err
	}
	templateName := l.opt.infraID + "-rhcos"
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return err
	}
	devices = append(devices, scsi)
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), dsRef,
		fmt.Sprintf("[%s] %s/%s.vmdk", datastoreName, templateName, templateName))
	disk.CapacityInKB = int64(16*units.GB) / units.KB
	disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo).ThinProvisioned = types.NewBool(true)
	nic, err := devices.CreateEthernetCard("vmxnet3", backing)
	if err != nil {
		return err
	}
	devices = append(devices, disk, nic)
	deviceChange, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return err
	}
	spec := types.VirtualMachineConfigSpec{
		Name:     templateName,
		GuestId:  string(types.VirtualMachineGuestOsIdentifierRhel8_64Guest),
		Version:  "vmx-15",
		NumCPUs:  4,
		MemoryMB: 16384,
		Files:    &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", datastoreName)},
		ExtraConfig: []types.BaseOptionValue{
			&types.OptionValue{Key: "disk.EnableUUID", Value: "TRUE"},
		},
		DeviceChange: deviceChange,
	}
	task, err := folder.CreateVM(ctx, spec, pool, nil)
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return fmt.Errorf("template VM: %w", err)
	}
	template := object.NewVirtualMachine(c, info.Result.(types.ManagedObjectReference))
	if err := template.MarkAsTemplate(ctx); err != nil {
		return fmt.Errorf("mark as template: %w", err)
	}
	inv.Template = inv.Folder + "/" + templateName
	inv.Morefs[inv.Template] = template.Reference().Value

	// Linux workers cloned from it by the machine-api, powered on, Tools reporting.
	poolRef := pool.Reference()
	for i := range l.opt.workers {
		name := fmt.Sprintf("%s-worker-%s", l.opt.infraID, randomSuffix(5))
		clone := types.VirtualMachineCloneSpec{
			Location: types.VirtualMachineRelocateSpec{Pool: &poolRef, Datastore: &dsRef},
			PowerOn:  true,
		}
		task, err := template.Clone(ctx, folder, name, clone)
		if err != nil {
			return err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return fmt.Errorf("worker %s: %w", name, err)
		}
		ref := info.Result.(types.ManagedObjectReference)
		fields := map[string]string{
			"toolsRunningStatus":  string(types.VirtualMachineToolsRunningStatusGuestToolsRunning),
			"toolsVersion":        "12325", // open-vm-tools 12.1.5
			"toolsVersionStatus2": string(types.VirtualMachineToolsVersionStatusGuestToolsUnmanaged),
			"toolsStatus":         string(types.VirtualMachineToolsStatusToolsOk),
			"guestState":          "running",
			"ipAddress":           fmt.Sprintf("%s.%d", l.opt.workerNet, 21+i),
			"hostName":            name,
			"guestFullName":       "Red Hat Enterprise Linux 8 (64-bit)",
			"guestId":             string(types.VirtualMachineGuestOsIdentifierRhel8_64Guest),
		}
		if _, err := l.setGuest(ref.Value, fields); err != nil {
			return fmt.Errorf("worker %s guest info: %w", name, err)
		}
		p := inv.Folder + "/" + name
		inv.Workers = append(inv.Workers, p)
		inv.WorkerIPs[name] = fields["ipAddress"]
		inv.Morefs[p] = ref.Value
	}
	return nil
}
