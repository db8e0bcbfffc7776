package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
)

// The control endpoint: plain HTTP + JSON on loopback. Errors are {"error": "..."} with 400
// (bad request), 404 (unknown VM) or 409 (wrong state). Reference: lab/vcsim.py's docstring.
func (l *lab) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !l.isReady() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "sessions": l.sessionCount()})
	})
	mux.HandleFunc("GET /inventory", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, l.inv)
	})

	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, l.calls.view())
	})
	mux.HandleFunc("DELETE /stats", func(w http.ResponseWriter, r *http.Request) {
		l.calls.clear()
		writeJSON(w, http.StatusOK, map[string]any{"reset": true})
	})

	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"rules": l.listFaults()})
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var req faultRequest
		if !readJSON(w, r, &req) {
			return
		}
		rule, err := l.addFault(req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rule)
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"cleared": l.clearFaults()})
	})

	mux.HandleFunc("GET /delays", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"delays": l.getDelays()})
	})
	mux.HandleFunc("POST /delays", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]int
		if !readJSON(w, r, &req) {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"delays": l.setDelays(req, false)})
	})
	mux.HandleFunc("DELETE /delays", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"delays": l.setDelays(nil, true)})
	})

	mux.HandleFunc("GET /session-timeout", func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		t := l.timeout
		l.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"timeout": t})
	})
	mux.HandleFunc("PUT /session-timeout", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Timeout string `json:"timeout"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if err := l.setSessionTimeout(req.Timeout); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"timeout": req.Timeout})
	})
	mux.HandleFunc("POST /sessions/invalidate", func(w http.ResponseWriter, r *http.Request) {
		users := l.invalidateSessions()
		writeJSON(w, http.StatusOK, map[string]any{"terminated": len(users), "users": users})
	})

	mux.HandleFunc("GET /vms/{moref}/guest", func(w http.ResponseWriter, r *http.Request) {
		out, err := l.getGuest(r.PathValue("moref"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /vms/{moref}/guest", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		if !readJSON(w, r, &req) {
			return
		}
		out, err := l.setGuest(r.PathValue("moref"), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /vms/{moref}/keys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := l.keysOf(r.PathValue("moref"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
	})
	mux.HandleFunc("POST /vms/{moref}/guestinfo", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		out, err := l.setGuestinfo(r.PathValue("moref"), req.Key, req.Value)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /vms/{moref}/guest-shutdown", func(w http.ResponseWriter, r *http.Request) {
		out, err := l.guestShutdown(r.PathValue("moref"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("bad JSON body: %v", err)})
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	var nf errNotFound
	var cf errConflict
	switch {
	case errors.As(err, &nf):
		status = http.StatusNotFound
	case errors.As(err, &cf):
		status = http.StatusConflict
	}
	writeJSON(w, status, map[string]any{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("control: writing response: %v", err)
	}
}
