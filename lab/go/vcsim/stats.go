package main

// Call accounting: the lab's vCenter counts every SOAP call it answers, per method and per session,
// and keeps a timeline of the tasks it ran, so benchmarks and tests read exact figures from the
// server (GET /stats) instead of patching clients. DELETE /stats starts a new count.
//
// Where a call is counted: in the registry's Handler (hooks.go), which the simulator runs before it
// dispatches each SOAP call, refused ones included (NotAuthenticated, injected faults). A call
// without a session is counted under "anonymous", except a successful Login, which is counted for
// the session it creates (see loginRecorder). Task times are the task's own TaskInfo times
// (queueTime, startTime, completeTime), which is what "how many clones were in flight" needs.

import (
	"slices"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// maxTasks bounds the task timeline (the oldest entries are dropped first).
const maxTasks = 100000

type sessionStats struct {
	Key       string           `json:"key"`
	User      string           `json:"user"`
	UserAgent string           `json:"user_agent"`
	IP        string           `json:"ip"`
	Logins    int64            `json:"logins"` // successful Login calls that created this session
	LoggedOut bool             `json:"logged_out"`
	First     time.Time        `json:"first_call"`
	Last      time.Time        `json:"last_call"`
	Total     int64            `json:"total"`
	Methods   map[string]int64 `json:"methods"`
}

type taskRecord struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`        // TaskInfo.name, e.g. CloneVm (as delays name tasks)
	Type       string     `json:"type"`        // TaskInfo.descriptionId, e.g. VirtualMachine.cloneVm
	Entity     string     `json:"entity"`      // moref of the object the task runs on
	EntityName string     `json:"entity_name"` // as TaskInfo has it
	Session    string     `json:"session"`     // key of the session that started it ("" internal)
	User       string     `json:"user"`
	State      string     `json:"state"`
	Queued     time.Time  `json:"queued"`
	Started    *time.Time `json:"started"`
	Completed  *time.Time `json:"completed"`
}

type callStats struct {
	mu        sync.Mutex
	since     time.Time
	total     int64
	methods   map[string]int64
	anonymous *sessionStats
	sessions  map[string]*sessionStats
	order     []string // session keys in order of first call
	tasks     []*taskRecord
	taskIndex map[string]*taskRecord
}

func newCallStats() *callStats {
	s := &callStats{}
	s.reset()
	return s
}

func (s *callStats) reset() {
	s.since = time.Now().UTC()
	s.total = 0
	s.methods = map[string]int64{}
	s.anonymous = &sessionStats{Key: "", User: "", Methods: map[string]int64{}}
	s.sessions = map[string]*sessionStats{}
	s.order = nil
	s.tasks = nil
	s.taskIndex = map[string]*taskRecord{}
}

func (s *callStats) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
}

// session returns the entry of a session, made on first sight. Callers hold s.mu.
func (s *callStats) session(us *types.UserSession, now time.Time) *sessionStats {
	e, ok := s.sessions[us.Key]
	if !ok {
		e = &sessionStats{Key: us.Key, User: us.UserName, UserAgent: us.UserAgent, IP: us.IpAddress,
			First: now, Methods: map[string]int64{}}
		s.sessions[us.Key] = e
		s.order = append(s.order, us.Key)
	}
	return e
}

func (e *sessionStats) count(method string, now time.Time) {
	e.Total++
	e.Methods[method]++
	e.Last = now
	if e.First.IsZero() {
		e.First = now
	}
}

// call counts one SOAP call. A Login without a session is left to loginRecorder when `deferLogin`.
func (s *callStats) call(ctx *simulator.Context, method string, deferLogin bool) {
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	s.methods[method]++
	switch {
	case ctx.Session != nil:
		e := s.session(&ctx.Session.UserSession, now)
		e.count(method, now)
		if method == "Logout" {
			e.LoggedOut = true
		}
	case !deferLogin:
		s.anonymous.count(method, now)
	}
}

// loggedIn attributes a Login to the session it created, or to "anonymous" when it failed.
func (s *callStats) loggedIn(ctx *simulator.Context, method string, ok bool) {
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || ctx.Session == nil {
		s.anonymous.count(method, now)
		return
	}
	e := s.session(&ctx.Session.UserSession, now)
	e.count(method, now)
	e.Logins++
}

// task records a task's state from its TaskInfo (called on every update of a Task object).
func (s *callStats) task(ctx *simulator.Context, info *types.TaskInfo) {
	if info == nil || info.Key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.taskIndex[info.Key]
	if !ok {
		if info.QueueTime.Before(s.since) {
			return // queued before the last reset: not part of this count
		}
		r = &taskRecord{ID: info.Key, Name: info.Name, Type: info.DescriptionId, EntityName: info.EntityName,
			Queued: info.QueueTime.UTC()}
		if info.Entity != nil {
			r.Entity = info.Entity.Value
		}
		if ctx != nil && ctx.Session != nil {
			r.Session, r.User = ctx.Session.Key, ctx.Session.UserName
		}
		s.taskIndex[info.Key] = r
		s.tasks = append(s.tasks, r)
		if len(s.tasks) > maxTasks {
			delete(s.taskIndex, s.tasks[0].ID)
			s.tasks = s.tasks[1:]
		}
	}
	r.State = string(info.State)
	if info.StartTime != nil {
		t := info.StartTime.UTC()
		r.Started = &t
	}
	if info.CompleteTime != nil {
		t := info.CompleteTime.UTC()
		r.Completed = &t
	}
}

type statsView struct {
	Since     time.Time        `json:"since"`
	Total     int64            `json:"total"`
	Methods   map[string]int64 `json:"methods"`
	Sessions  []sessionStats   `json:"sessions"`
	Anonymous sessionStats     `json:"anonymous"`
	Tasks     []taskRecord     `json:"tasks"`
}

func copySession(e *sessionStats) sessionStats {
	c := *e
	c.Methods = make(map[string]int64, len(e.Methods))
	for k, v := range e.Methods {
		c.Methods[k] = v
	}
	return c
}

func (s *callStats) view() statsView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := statsView{Since: s.since, Total: s.total, Methods: map[string]int64{},
		Sessions: []sessionStats{}, Anonymous: copySession(s.anonymous), Tasks: []taskRecord{}}
	for k, n := range s.methods {
		v.Methods[k] = n
	}
	for _, key := range s.order {
		v.Sessions = append(v.Sessions, copySession(s.sessions[key]))
	}
	for _, r := range s.tasks {
		v.Tasks = append(v.Tasks, *r)
	}
	slices.SortStableFunc(v.Tasks, func(a, b taskRecord) int { return a.Queued.Compare(b.Queued) })
	return v
}

// loginRecorder stands in for the SessionManager during one Login call (Registry.Handler may
// return the object a call is dispatched to): it runs the real Login, then counts the call for the
// session the Login created, which only exists afterwards.
type loginRecorder struct {
	*simulator.SessionManager
	stats *callStats
}

func (r *loginRecorder) Login(ctx *simulator.Context, req *types.Login) soap.HasFault {
	res := r.SessionManager.Login(ctx, req)
	body, _ := res.(*methods.LoginBody)
	r.stats.loggedIn(ctx, "Login", body != nil && body.Fault_ == nil)
	return res
}

// countCall is called by the registry Handler for every SOAP call; it returns the object to
// dispatch a Login to (nil: the usual one).
func (l *lab) countCall(ctx *simulator.Context, method *simulator.Method) mo.Reference {
	login := method.Name == "Login" && ctx.Session == nil && method.This.Type == "SessionManager"
	l.calls.call(ctx, method.Name, login)
	if !login {
		return nil
	}
	sm, ok := ctx.Map.Get(method.This).(*simulator.SessionManager)
	if !ok {
		l.calls.loggedIn(ctx, method.Name, false)
		return nil
	}
	return &loginRecorder{SessionManager: sm, stats: l.calls}
}
