package main

import (
	"context"
	"fmt"
	"log"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// faultRule is one fault injection rule as the control endpoint shows it.
//
// mode "call": the SOAP call itself fails with the fault (the simulator's FaultInjector).
// mode "task": the call succeeds and returns a task, which runs for delay_ms and ends in state
// error with the fault, which is how vCenter reports most failures of *_Task methods.
type faultRule struct {
	ID          int     `json:"id"`
	Method      string  `json:"method"`
	Moref       string  `json:"moref,omitempty"`
	Fault       string  `json:"fault"`
	Message     string  `json:"message,omitempty"`
	Probability float64 `json:"probability"`
	MaxCount    int     `json:"max_count"`
	SkipCount   int     `json:"skip_count"`
	DelayMs     int     `json:"delay_ms"`
	Mode        string  `json:"mode"`
	Count       int64   `json:"count"`

	sim     *simulator.FaultInjectionRule
	skipped int
}

// faultNames lists the fault types the control endpoint accepts by name.
var faultNames = []string{
	"TaskInProgress", "HostCommunication", "HostNotConnected", "NotAuthenticated", "NoPermission",
	"InvalidState", "InvalidPowerState", "InvalidHostState", "SystemError", "Timedout",
	"InvalidArgument", "ManagedObjectNotFound", "ResourceInUse", "InsufficientResourcesFault",
	"DuplicateName", "FileNotFound", "NotFound", "ToolsUnavailable", "RequestCanceled",
	"InvalidDatastore", "CannotAccessFile", "MethodDisabled",
}

// authFaults are refused by vCenter at the call, never inside a task.
var authFaults = map[string]bool{"NotAuthenticated": true, "NoPermission": true, "ManagedObjectNotFound": true}

func makeFault(name, msg string, this types.ManagedObjectReference) types.BaseMethodFault {
	cause := func() types.MethodFault {
		if msg == "" {
			return types.MethodFault{}
		}
		return types.MethodFault{FaultMessage: []types.LocalizableMessage{{Key: "lab.injected", Message: msg}}}
	}
	vim := types.VimFault{MethodFault: cause()}
	runtime := types.RuntimeFault{MethodFault: cause()}
	switch name {
	case "TaskInProgress":
		return &types.TaskInProgress{VimFault: vim, Task: types.ManagedObjectReference{Type: "Task", Value: "task-lab-busy"}}
	case "HostCommunication":
		return &types.HostCommunication{RuntimeFault: runtime}
	case "HostNotConnected":
		return &types.HostNotConnected{HostCommunication: types.HostCommunication{RuntimeFault: runtime}}
	case "NotAuthenticated":
		return &types.NotAuthenticated{NoPermission: types.NoPermission{SecurityError: types.SecurityError{RuntimeFault: runtime}, Object: &this, PrivilegeId: "System.View"}}
	case "NoPermission":
		return &types.NoPermission{SecurityError: types.SecurityError{RuntimeFault: runtime}, Object: &this, PrivilegeId: "System.Modify"}
	case "InvalidState":
		return &types.InvalidState{VimFault: vim}
	case "InvalidPowerState":
		return &types.InvalidPowerState{InvalidState: types.InvalidState{VimFault: vim}}
	case "InvalidHostState":
		return &types.InvalidHostState{InvalidState: types.InvalidState{VimFault: vim}}
	case "SystemError":
		reason := msg
		if reason == "" {
			reason = "A general system error occurred (injected by the lab)"
		}
		return &types.SystemError{RuntimeFault: runtime, Reason: reason}
	case "Timedout":
		return &types.Timedout{VimFault: vim}
	case "InvalidArgument":
		return &types.InvalidArgument{RuntimeFault: runtime}
	case "ManagedObjectNotFound":
		return &types.ManagedObjectNotFound{RuntimeFault: runtime, Obj: this}
	case "ResourceInUse":
		return &types.ResourceInUse{VimFault: vim, Type: this.Type, Name: this.Value}
	case "InsufficientResourcesFault":
		return &types.InsufficientResourcesFault{VimFault: vim}
	case "DuplicateName":
		return &types.DuplicateName{VimFault: vim, Name: "lab-duplicate", Object: this}
	case "FileNotFound":
		return &types.FileNotFound{FileFault: types.FileFault{VimFault: vim, File: "[LocalDS_0] lab-missing"}}
	case "CannotAccessFile":
		return &types.CannotAccessFile{FileFault: types.FileFault{VimFault: vim, File: "[LocalDS_0] lab-inaccessible"}}
	case "NotFound":
		return &types.NotFound{VimFault: vim}
	case "ToolsUnavailable":
		return &types.ToolsUnavailable{VimFault: vim}
	case "RequestCanceled":
		return &types.RequestCanceled{RuntimeFault: runtime}
	case "InvalidDatastore":
		return &types.InvalidDatastore{VimFault: vim}
	case "MethodDisabled":
		return &types.MethodDisabled{RuntimeFault: runtime}
	}
	return nil
}

// faultRequest is the body of POST /faults.
type faultRequest struct {
	Method      string   `json:"method"`
	Moref       string   `json:"moref"`
	Fault       string   `json:"fault"`
	Message     string   `json:"message"`
	Probability *float64 `json:"probability"`
	MaxCount    int      `json:"max_count"`
	SkipCount   int      `json:"skip_count"`
	DelayMs     int      `json:"delay_ms"`
	Mode        string   `json:"mode"` // "call", "task" or "" (task for *_Task methods, else call)
}

func (l *lab) addFault(req faultRequest) (*faultRule, error) {
	if req.Method == "" {
		return nil, fmt.Errorf("method is required (a SOAP method name such as CloneVM_Task, or *)")
	}
	if makeFault(req.Fault, "", types.ManagedObjectReference{}) == nil {
		return nil, fmt.Errorf("unknown fault %q; known: %s", req.Fault, strings.Join(faultNames, ", "))
	}
	p := 1.0
	if req.Probability != nil {
		p = *req.Probability
	}
	if p < 0 || p > 1 || req.MaxCount < 0 || req.SkipCount < 0 || req.DelayMs < 0 {
		return nil, fmt.Errorf("probability must be in [0,1]; max_count, skip_count, delay_ms >= 0")
	}
	mode := req.Mode
	if mode == "" {
		mode = "call"
		if strings.HasSuffix(req.Method, "_Task") && !authFaults[req.Fault] {
			mode = "task"
		}
	}
	if mode != "call" && mode != "task" {
		return nil, fmt.Errorf("mode must be call or task, not %q", mode)
	}
	if mode == "task" && !strings.HasSuffix(req.Method, "_Task") {
		return nil, fmt.Errorf("mode task needs a *_Task method, not %q", req.Method)
	}
	r := &faultRule{
		Method: req.Method, Moref: req.Moref, Fault: req.Fault, Message: req.Message,
		Probability: p, MaxCount: req.MaxCount, SkipCount: req.SkipCount, DelayMs: req.DelayMs, Mode: mode,
	}
	l.mu.Lock()
	l.nextID++
	r.ID = l.nextID
	l.faults = append(l.faults, r)
	l.mu.Unlock()
	if mode == "call" {
		msg := req.Message
		if msg == "" {
			msg = req.Fault + " (injected by the lab)"
		}
		sim := &simulator.FaultInjectionRule{
			MethodName: req.Method, ObjectType: "*", ObjectName: "*",
			Probability: p, FaultType: simulator.FaultTypeCustom, Message: msg,
			Delay: req.DelayMs, MaxCount: req.MaxCount, SkipCount: req.SkipCount, Enabled: true,
		}
		if req.Moref != "" {
			moref := req.Moref
			sim.InclusionPropertyFilter = func(obj mo.Reference) bool { return obj.Reference().Value == moref }
		}
		// The fault names the object it was raised for only where the fault type has such a field;
		// the rule may match many objects, so use a neutral reference for those.
		sim.Fault = makeFault(req.Fault, req.Message, types.ManagedObjectReference{Type: "ManagedEntity", Value: req.Moref})
		r.sim = sim
		l.m.Service.AddFaultRule(sim)
	}
	log.Printf("fault rule %d: %s %s on %s moref=%q p=%.2f max=%d skip=%d delay=%dms",
		r.ID, mode, req.Fault, req.Method, req.Moref, p, req.MaxCount, req.SkipCount, req.DelayMs)
	return r, nil
}

func (l *lab) listFaults() []faultRule {
	simRules := l.m.Service.GetFaultRules()
	stats := l.m.Service.GetFaultStats()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]faultRule, 0, len(l.faults))
	for _, r := range l.faults {
		c := *r
		if r.sim != nil {
			if i := slices.Index(simRules, r.sim); i >= 0 {
				if n, ok := stats["rule_"+strconv.Itoa(i)+"_count"].(int64); ok {
					c.Count = n
				}
			}
		}
		out = append(out, c)
	}
	return out
}

func (l *lab) clearFaults() int {
	l.m.Service.ClearFaultRules()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.faults)
	l.faults = nil
	clear(l.pending)
	log.Printf("fault rules cleared (%d)", n)
	return n
}

// matchTaskFault picks the task-mode rule that applies to this call, counting it, or nil.
func (l *lab) matchTaskFault(method *simulator.Method) *faultRule {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.faults {
		if r.Mode != "task" || (r.Method != "*" && r.Method != method.Name) {
			continue
		}
		if r.Moref != "" && r.Moref != method.This.Value {
			continue
		}
		if r.MaxCount > 0 && r.Count >= int64(r.MaxCount) {
			continue
		}
		if rand.Float64() > r.Probability {
			continue
		}
		if r.skipped < r.SkipCount {
			r.skipped++
			continue
		}
		r.Count++
		return r
	}
	return nil
}

// Methods that work without a session, in vCenter as in the simulator.
var sessionless = map[string]bool{
	"Login": true, "LoginByToken": true, "LoginExtensionByCertificate": true, "CloneSession": true,
	"RetrieveServiceContent": true, "RetrieveInternalContent": true, "List": true,
	"GetTrustedCertificates": true,
}

// handler runs before the simulator dispatches each SOAP call (Registry.Handler).
func (l *lab) handler(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	dispatch := l.countCall(ctx, method) // stats.go: every call is counted, refused ones too
	if ctx.Session == nil {
		// The simulator lets property collector reads through without a session; vCenter answers
		// NotAuthenticated, which is what clients with an expired session must see and handle.
		if !sessionless[method.Name] && !onlyServiceInstance(method) {
			return nil, &types.NotAuthenticated{NoPermission: types.NoPermission{Object: &method.This, PrivilegeId: "System.View"}}
		}
		return dispatch, nil
	}
	if strings.HasSuffix(method.Name, "_Task") {
		if r := l.matchTaskFault(method); r != nil {
			l.mu.Lock()
			l.pending[ctx] = r
			l.mu.Unlock()
			log.Printf("fault rule %d armed: %s on %s will end in %s", r.ID, method.Name, method.This.Value, r.Fault)
		}
	}
	return nil, nil
}

// onlyServiceInstance: an anonymous property read of the ServiceInstance itself, which vCenter allows.
func onlyServiceInstance(method *simulator.Method) bool {
	var specs []types.PropertyFilterSpec
	switch b := method.Body.(type) {
	case *types.RetrieveProperties:
		specs = b.SpecSet
	case *types.RetrievePropertiesEx:
		specs = b.SpecSet
	default:
		return false
	}
	for _, s := range specs {
		for _, o := range s.ObjectSet {
			if o.Obj.Type != "ServiceInstance" {
				return false
			}
		}
	}
	return len(specs) > 0
}

// taskHook is a Registry RegisterObject handler: when a task created by a call with an armed
// task-mode fault starts running, its work is replaced by "wait delay_ms, then fail".
type taskHook struct{ l *lab }

func (h *taskHook) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "LabTaskFaultHook", Value: "lab-task-fault-hook"}
}

// PutObject completes new VMs where the simulator leaves an enum empty that vCenter always sets:
// pyVmomi refuses to decode runtime/summary with faultToleranceState or recordReplayState ""
// (AttributeError from the enum type).
func (h *taskHook) PutObject(_ *simulator.Context, obj mo.Reference) {
	vm, ok := obj.(*simulator.VirtualMachine)
	if !ok {
		return
	}
	for _, rt := range []*types.VirtualMachineRuntimeInfo{&vm.Runtime, &vm.Summary.Runtime} {
		if rt.FaultToleranceState == "" {
			rt.FaultToleranceState = types.VirtualMachineFaultToleranceStateNotConfigured
		}
		if rt.RecordReplayState == "" {
			rt.RecordReplayState = types.VirtualMachineRecordReplayStateInactive
		}
	}
}

func (h *taskHook) RemoveObject(*simulator.Context, types.ManagedObjectReference) {}

func (h *taskHook) UpdateObject(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	ref := obj.Reference()
	if ref.Type != "Task" || ctx == nil {
		return
	}
	if t, ok := obj.(*mo.Task); ok {
		h.l.calls.task(ctx, &t.Info)
	}
	h.l.mu.Lock()
	r, ok := h.l.pending[ctx]
	if ok {
		delete(h.l.pending, ctx)
	}
	h.l.mu.Unlock()
	if !ok {
		return
	}
	task, isTask := ctx.Map.Get(ref).(*simulator.Task)
	if !isTask {
		return
	}
	fault := makeFault(r.Fault, r.Message, *task.Info.Entity)
	delay := time.Duration(r.DelayMs) * time.Millisecond
	// Task.Run starts the goroutine that calls Execute only after this update returns.
	task.Execute = func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		time.Sleep(delay)
		return nil, fault
	}
	log.Printf("fault rule %d: task %s (%s) fails with %s", r.ID, ref.Value, task.Info.Name, r.Fault)
}

func (l *lab) installHooks() {
	l.m.Map().Handler = l.handler
	simulator.PutUsbScanCodesHook = l.putUsbScanCodes
}

// Delays: SOAP method names (e.g. RetrievePropertiesEx, CloneVM_Task) delay the response; task
// names (e.g. CloneVm, PowerOn, ReconfigVm) keep the task running. Maps are replaced, never
// mutated, because the simulator reads them without a lock.
func (l *lab) setDelays(add map[string]int, replace bool) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := map[string]int{}
	if !replace {
		maps.Copy(next, l.delays)
	}
	for k, v := range add {
		if v <= 0 {
			delete(next, k)
		} else {
			next[k] = v
		}
	}
	l.delays = next
	api := maps.Clone(next)
	tasks := maps.Clone(next)
	// Do not hold the entity's lock while a task is delayed: listeners must be able to read the
	// VM (and see the task running) in the meantime.
	tasks["LockHandoff"] = 0
	l.m.DelayConfig.MethodDelay = api
	simulator.TaskDelay.MethodDelay = tasks
	log.Printf("delays: %v", next)
	return maps.Clone(next)
}

func (l *lab) getDelays() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.delays)
}

// controlContext is a simulator request context for work done on behalf of the control endpoint.
// Each call gets its own, since object locks are shared by context.
func (l *lab) controlContext() *simulator.Context {
	c := *l.m.Service.Context
	c.Context = context.Background()
	c.Session = &simulator.Session{
		UserSession: types.UserSession{Key: "lab-control-" + randomSuffix(12), UserName: ""},
		Registry:    simulator.NewRegistry(),
		Map:         l.m.Map(),
	}
	return &c
}

const sessionTimeoutKey = "config.vmacore.soap.sessionTimeout"

// setSessionTimeout sets vCenter's idle session timeout (a Go duration) for later logins; "" clears it.
func (l *lab) setSessionTimeout(value string) error {
	if value != "" {
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			return fmt.Errorf("timeout must be a positive Go duration such as 30s, not %q", value)
		}
	}
	ctx := l.controlContext()
	om := l.m.Map().OptionManager()
	ctx.WithLock(om, func() {
		if value == "" {
			om.Setting = slices.DeleteFunc(om.Setting, func(o types.BaseOptionValue) bool {
				return o.GetOptionValue().Key == sessionTimeoutKey
			})
			return
		}
		om.UpdateOptions(&types.UpdateOptions{ChangedValue: []types.BaseOptionValue{
			&types.OptionValue{Key: sessionTimeoutKey, Value: value},
		}})
	})
	l.mu.Lock()
	l.timeout = value
	l.mu.Unlock()
	log.Printf("session timeout: %q (applies to later logins)", value)
	return nil
}

// invalidateSessions terminates every current SOAP session, as an expired or revoked session
// looks to a client: its next call fails with NotAuthenticated until it logs in again.
func (l *lab) invalidateSessions() []string {
	ctx := l.controlContext()
	sm := l.m.Map().SessionManager()
	view, ok := ctx.Session.Get(sm.Reference()).(*simulator.SessionManager)
	if !ok {
		return nil
	}
	var users []string
	for _, s := range view.SessionList {
		if s.Key == ctx.Session.Key {
			continue
		}
		res := sm.TerminateSession(ctx, &types.TerminateSession{SessionId: []string{s.Key}})
		if res.Fault() == nil {
			users = append(users, s.UserName)
		}
	}
	log.Printf("terminated %d sessions", len(users))
	return users
}

func (l *lab) sessionCount() int {
	ctx := l.controlContext()
	sm := l.m.Map().SessionManager()
	if view, ok := ctx.Session.Get(sm.Reference()).(*simulator.SessionManager); ok {
		return len(view.SessionList)
	}
	return 0
}

// Guest information, as VMware Tools in the guest reports it.
var guestEnums = map[string][]string{
	"toolsRunningStatus":  {"guestToolsNotRunning", "guestToolsRunning", "guestToolsExecutingScripts"},
	"toolsVersionStatus2": {"guestToolsNotInstalled", "guestToolsNeedUpgrade", "guestToolsCurrent", "guestToolsUnmanaged", "guestToolsTooOld", "guestToolsSupportedOld", "guestToolsSupportedNew", "guestToolsTooNew", "guestToolsBlacklisted"},
	"toolsStatus":         {"toolsNotInstalled", "toolsNotRunning", "toolsOld", "toolsOk"},
	"guestState":          {"running", "notRunning", "shuttingDown", "resetting", "standby", "unknown"},
}

var guestFields = []string{"toolsRunningStatus", "toolsVersion", "toolsVersionStatus2", "toolsStatus",
	"guestState", "ipAddress", "hostName", "guestFullName", "guestId"}

// legacy toolsVersionStatus for a toolsVersionStatus2 value.
func toolsVersionStatus(v2 string) string {
	switch v2 {
	case "guestToolsNotInstalled", "guestToolsCurrent", "guestToolsUnmanaged":
		return v2
	default:
		return "guestToolsNeedUpgrade"
	}
}

func valueOr(fields map[string]string, key, current string) string {
	if v, ok := fields[key]; ok {
		return v
	}
	return current
}

func derivedToolsStatus(running, version2 string) string {
	switch {
	case version2 == "guestToolsNotInstalled":
		return string(types.VirtualMachineToolsStatusToolsNotInstalled)
	case running != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning):
		return string(types.VirtualMachineToolsStatusToolsNotRunning)
	case version2 == "guestToolsNeedUpgrade" || version2 == "guestToolsSupportedOld" || version2 == "guestToolsTooOld":
		return string(types.VirtualMachineToolsStatusToolsOld)
	default:
		return string(types.VirtualMachineToolsStatusToolsOk)
	}
}

func (l *lab) lookupVM(moref string) (*simulator.VirtualMachine, error) {
	obj := l.m.Map().Get(types.ManagedObjectReference{Type: "VirtualMachine", Value: moref})
	vm, ok := obj.(*simulator.VirtualMachine)
	if !ok {
		return nil, errNotFound{fmt.Sprintf("no VirtualMachine with moref %q", moref)}
	}
	return vm, nil
}

type errNotFound struct{ msg string }

func (e errNotFound) Error() string { return e.msg }

type errConflict struct{ msg string }

func (e errConflict) Error() string { return e.msg }

// setGuest applies guest fields to a VM and returns the resulting guest info.
func (l *lab) setGuest(moref string, fields map[string]string) (map[string]any, error) {
	for k, v := range fields {
		if !slices.Contains(guestFields, k) {
			return nil, fmt.Errorf("unknown guest field %q; known: %s", k, strings.Join(guestFields, ", "))
		}
		if allowed, ok := guestEnums[k]; ok && !slices.Contains(allowed, v) {
			return nil, fmt.Errorf("%s=%q is not one of %s", k, v, strings.Join(allowed, ", "))
		}
		if k == "toolsVersion" && v != "" {
			if _, err := strconv.ParseInt(v, 10, 32); err != nil {
				return nil, fmt.Errorf("toolsVersion must be VMware's encoded number (major*1024+minor*32+patch), not %q", v)
			}
		}
	}
	vm, err := l.lookupVM(moref)
	if err != nil {
		return nil, err
	}
	ctx := l.controlContext()
	var out map[string]any
	ctx.WithLock(vm, func() {
		var changes []types.PropertyChange
		set := func(name string, val any) { changes = append(changes, types.PropertyChange{Name: name, Val: val}) }
		for _, k := range guestFields {
			v, ok := fields[k]
			if !ok {
				continue
			}
			switch k {
			case "toolsRunningStatus", "toolsStatus":
				set("guest."+k, v)
				set("summary.guest."+k, v)
			case "toolsVersionStatus2":
				set("guest.toolsVersionStatus2", v)
				set("guest.toolsVersionStatus", toolsVersionStatus(v))
				set("summary.guest.toolsVersionStatus2", v)
				set("summary.guest.toolsVersionStatus", toolsVersionStatus(v))
			case "toolsVersion":
				set("guest.toolsVersion", v)
				if vm.Config != nil && vm.Config.Tools != nil {
					n, _ := strconv.ParseInt(v, 10, 32)
					set("config.tools.toolsVersion", int32(n))
				}
			case "guestState":
				set("guest.guestState", v)
			case "hostName", "guestFullName", "guestId":
				set("guest."+k, v)
				set("summary.guest."+k, v)
			case "ipAddress":
				set("guest.ipAddress", v)
				set("summary.guest.ipAddress", v)
				if len(vm.Guest.Net) > 0 {
					nets := slices.Clone(vm.Guest.Net)
					if v == "" {
						nets[0].IpAddress = nil
						nets[0].IpConfig = nil
					} else {
						nets[0].IpAddress = []string{v}
						nets[0].IpConfig = &types.NetIpConfigInfo{IpAddress: []types.NetIpConfigInfoIpAddress{{
							IpAddress: v, PrefixLength: 24, State: string(types.NetIpConfigInfoIpAddressStatusPreferred),
						}}}
					}
					set("guest.net", nets)
				}
			}
		}
		_, explicit := fields["toolsStatus"]
		_, running := fields["toolsRunningStatus"]
		_, version := fields["toolsVersionStatus2"]
		if !explicit && (running || version) {
			// vCenter derives the (deprecated, still widely read) toolsStatus from the other two.
			status := derivedToolsStatus(valueOr(fields, "toolsRunningStatus", vm.Guest.ToolsRunningStatus),
				valueOr(fields, "toolsVersionStatus2", vm.Guest.ToolsVersionStatus2))
			set("guest.toolsStatus", status)
			set("summary.guest.toolsStatus", status)
		}
		if len(changes) > 0 {
			ctx.Update(vm, changes)
		}
		out = guestInfo(vm)
	})
	log.Printf("guest %s (%s): %v", moref, vm.Name, fields)
	return out, nil
}

// setGuestinfo is `rpctool "info-set guestinfo.<key> <value>"` inside the guest: the VMX keeps the
// variable and vCenter shows it in the VM's config.extraConfig. It does not go through the vSphere
// API (no session, no ReconfigVM_Task, no fault rule applies), as the guest's own call does not.
func (l *lab) setGuestinfo(moref, key, value string) (map[string]any, error) {
	if !strings.HasPrefix(key, "guestinfo.") || len(key) == len("guestinfo.") {
		return nil, fmt.Errorf("guestinfo key %q: the guest can set guestinfo.* variables only", key)
	}
	vm, err := l.lookupVM(moref)
	if err != nil {
		return nil, err
	}
	ctx := l.controlContext()
	ctx.WithLock(vm, func() {
		opts := slices.Clone(vm.Config.ExtraConfig)
		found := false
		for i, o := range opts {
			if o.GetOptionValue().Key == key {
				opts[i] = &types.OptionValue{Key: key, Value: value}
				found = true
			}
		}
		if !found {
			opts = append(opts, &types.OptionValue{Key: key, Value: value})
		}
		ctx.Update(vm, []types.PropertyChange{{Name: "config.extraConfig", Val: opts}})
	})
	log.Printf("guestinfo %s (%s): %s = %.200q", moref, vm.Name, key, value)
	return map[string]any{"moref": moref, "key": key, "value": value}, nil
}

func guestInfo(vm *simulator.VirtualMachine) map[string]any {
	g := vm.Guest
	var nets []map[string]any
	for _, n := range g.Net {
		nets = append(nets, map[string]any{"network": n.Network, "macAddress": n.MacAddress, "ipAddress": n.IpAddress, "connected": n.Connected})
	}
	return map[string]any{
		"moref": vm.Self.Value, "name": vm.Name, "powerState": vm.Runtime.PowerState,
		"toolsRunningStatus": g.ToolsRunningStatus, "toolsVersion": g.ToolsVersion,
		"toolsVersionStatus2": g.ToolsVersionStatus2, "toolsStatus": g.ToolsStatus,
		"guestState": g.GuestState, "ipAddress": g.IpAddress, "hostName": g.HostName,
		"guestFullName": g.GuestFullName, "guestId": g.GuestId, "net": nets,
	}
}

func (l *lab) getGuest(moref string) (map[string]any, error) {
	vm, err := l.lookupVM(moref)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	l.controlContext().WithLock(vm, func() { out = guestInfo(vm) })
	return out, nil
}

// guestShutdown powers a VM off as the guest's own shutdown does: no client task, the power state
// changes, Tools stop reporting, and vCenter posts VmPoweredOffEvent.
func (l *lab) guestShutdown(moref string) (map[string]any, error) {
	vm, err := l.lookupVM(moref)
	if err != nil {
		return nil, err
	}
	ctx := l.controlContext()
	var event types.VmEvent
	var failure error
	ctx.WithLock(vm, func() {
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			failure = errConflict{fmt.Sprintf("VM %s (%s) is %s, not poweredOn", moref, vm.Name, vm.Runtime.PowerState)}
			return
		}
		event = l.vmEvent(vm)
		changes := []types.PropertyChange{
			{Name: "runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
			{Name: "summary.runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
			{Name: "summary.runtime.bootTime", Val: nil},
			{Name: "guest.toolsRunningStatus", Val: string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)},
			{Name: "summary.guest.toolsRunningStatus", Val: string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)},
			{Name: "guest.toolsStatus", Val: string(types.VirtualMachineToolsStatusToolsNotRunning)},
			{Name: "summary.guest.toolsStatus", Val: string(types.VirtualMachineToolsStatusToolsNotRunning)},
			{Name: "guest.guestState", Val: "notRunning"},
			{Name: "guest.ipAddress", Val: ""},
			{Name: "summary.guest.ipAddress", Val: ""},
		}
		if len(vm.Guest.Net) > 0 {
			nets := slices.Clone(vm.Guest.Net)
			for i := range nets {
				nets[i].IpAddress = nil
				nets[i].IpConfig = nil
			}
			changes = append(changes, types.PropertyChange{Name: "guest.net", Val: nets})
		}
		ctx.Update(vm, changes)
	})
	if failure != nil {
		return nil, failure
	}
	em := l.m.Map().EventManager()
	ctx.WithLock(em, func() {
		em.PostEvent(ctx, &types.PostEvent{EventToPost: &types.VmPoweredOffEvent{VmEvent: event}})
	})
	log.Printf("guest shutdown: %s (%s) powered off", moref, vm.Name)
	return l.getGuest(moref)
}

// vmEvent fills the arguments vCenter puts on a VM event (datacenter, cluster, host, datastore, VM).
func (l *lab) vmEvent(vm *simulator.VirtualMachine) types.VmEvent {
	reg := l.m.Map()
	ev := types.VmEvent{Event: types.Event{Vm: &types.VmEventArgument{
		EntityEventArgument: types.EntityEventArgument{Name: vm.Name}, Vm: vm.Self,
	}}}
	if vm.Runtime.Host != nil {
		if h, ok := reg.Get(*vm.Runtime.Host).(*simulator.HostSystem); ok {
			ev.Host = &types.HostEventArgument{EntityEventArgument: types.EntityEventArgument{Name: h.Name}, Host: h.Self}
			if h.Parent != nil {
				if cr, ok := reg.Get(*h.Parent).(mo.Entity); ok {
					ev.ComputeResource = &types.ComputeResourceEventArgument{
						EntityEventArgument: types.EntityEventArgument{Name: cr.Entity().Name}, ComputeResource: cr.Reference(),
					}
				}
			}
		}
	}
	if len(vm.Datastore) > 0 {
		if ds, ok := reg.Get(vm.Datastore[0]).(*simulator.Datastore); ok {
			ev.Ds = &types.DatastoreEventArgument{EntityEventArgument: types.EntityEventArgument{Name: ds.Name}, Datastore: ds.Self}
		}
	}
	// Walk up to the datacenter.
	var parent *types.ManagedObjectReference = vm.Parent
	for parent != nil {
		obj, ok := reg.Get(*parent).(mo.Entity)
		if !ok {
			break
		}
		if parent.Type == "Datacenter" {
			ev.Datacenter = &types.DatacenterEventArgument{
				EntityEventArgument: types.EntityEventArgument{Name: obj.Entity().Name}, Datacenter: *parent,
			}
			break
		}
		parent = obj.Entity().Parent
	}
	return ev
}
