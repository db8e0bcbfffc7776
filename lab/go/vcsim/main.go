// Command vcsim-lab is the lab's vCenter: govmomi's vSphere API simulator (the same `simulator`
// package vcsim is made of) serving an inventory that looks like a vSphere site hosting an
// OpenShift cluster, over HTTPS with a lab-CA certificate and a real username/password check.
//
// Next to the SOAP API it serves a small plain-HTTP control endpoint on loopback (see control.go)
// through which tests and the lab's Windows guest twin inject faults and delays, expire sessions,
// report guest information as VMware Tools would, and power a VM off the way a guest shutdown does.
// Every change goes through the simulator's registry under the object's lock, so property
// collector listeners (WaitForUpdatesEx) see it like any other change.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // REST endpoints (tagging), as vcsim has
)

type options struct {
	listen       string
	control      string
	certFile     string
	keyFile      string
	username     string
	passwordFile string
	datastoreDir string
	infraID      string
	childPool    string
	workers      int
	workerNet    string
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:18989", "host:port of the vSphere API (HTTPS)")
	flag.StringVar(&o.control, "control", "127.0.0.1:18990", "host:port of the control endpoint (HTTP)")
	flag.StringVar(&o.certFile, "tls-cert", "", "server certificate (PEM), signed by the lab CA")
	flag.StringVar(&o.keyFile, "tls-key", "", "server private key (PEM)")
	flag.StringVar(&o.username, "username", "administrator@vsphere.local", "the only user that may log in")
	flag.StringVar(&o.passwordFile, "password-file", "", "file holding that user's password")
	flag.StringVar(&o.datastoreDir, "datastore-dir", "", "directory backing datastore LocalDS_0")
	flag.StringVar(&o.infraID, "infra-id", "", "OpenShift infrastructure ID: VM folder, template and worker names")
	flag.StringVar(&o.childPool, "child-pool", "DC0_C0_RP1", "child resource pool of the cluster (empty: none)")
	flag.IntVar(&o.workers, "workers", 3, "Linux worker VMs to create, powered on, in the cluster folder")
	flag.StringVar(&o.workerNet, "worker-net", "192.168.77", "first three octets of the Linux workers' IPs")
	flag.Parse()
	return o
}

func fatalf(format string, args ...any) {
	log.Printf("fatal: "+format, args...)
	os.Exit(1)
}

func main() {
	log.SetOutput(os.Stdout)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	o := parseFlags()

	if o.certFile == "" || o.keyFile == "" || o.passwordFile == "" || o.datastoreDir == "" || o.infraID == "" {
		fatalf("-tls-cert, -tls-key, -password-file, -datastore-dir and -infra-id are required")
	}
	raw, err := os.ReadFile(o.passwordFile)
	if err != nil {
		fatalf("password: %v", err)
	}
	password := strings.TrimSpace(string(raw))
	if password == "" {
		fatalf("password file %s is empty", o.passwordFile)
	}
	cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
	if err != nil {
		fatalf("TLS key pair: %v", err)
	}
	if err := os.MkdirAll(o.datastoreDir, 0o755); err != nil {
		fatalf("datastore dir: %v", err)
	}
	// Fail early, with the port in the message, rather than inside httptest's listener.
	for _, addr := range []string{o.listen, o.control} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fatalf("cannot listen on %s: %v", addr, err)
		}
		_ = l.Close()
	}

	m := simulator.VPX()
	m.Host = 0      // no standalone host: an OpenShift site runs on the cluster
	m.Datastore = 0 // LocalDS_0 is created below, in the directory we choose
	m.Machine = 0   // no DC0_C0_RP0_VM* strays; the inventory below adds what a site has
	m.Portgroup = 0 // "VM Network" (standard port group) is the only network, as in most labs
	about := &m.ServiceContent.About
	about.FullName = "VMware vCenter Server 8.0.3 build-24022515"
	about.Version = "8.0.3"
	about.Build = "24022515"
	about.ApiVersion = "8.0.3.0"
	about.LicenseProductVersion = "8.0"
	about.InstanceUuid = "8e1ee2b0-3b1f-4a2a-9f52-0c8a5a1c9e01"

	if err := m.Create(); err != nil {
		fatalf("simulator model: %v", err)
	}
	defer m.Remove()

	l := newLab(m, o)
	l.m.Map().AddHandler(&taskHook{l: l}) // also completes the inventory's own VMs
	start := time.Now()
	if err := l.buildInventory(context.Background()); err != nil {
		fatalf("inventory: %v", err)
	}
	log.Printf("inventory built in %s: %s", time.Since(start).Round(time.Millisecond), l.inventorySummary())

	// Hooks are installed after the inventory is built so that set-up is not subject to them.
	l.installHooks()

	svc := m.Service
	svc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	svc.Listen = &url.URL{Host: o.listen, User: url.UserPassword(o.username, password)}
	svc.RegisterEndpoints = true
	srv := svc.NewServer()
	defer srv.Close()
	log.Printf("vSphere API listening on https://%s/sdk (user %s)", srv.URL.Host, o.username)

	ctl := &http.Server{Addr: o.control, Handler: l.controlHandler(), ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", o.control)
	if err != nil {
		fatalf("control endpoint: %v", err)
	}
	go func() {
		if err := ctl.Serve(ln); err != nil && err != http.ErrServerClosed {
			fatalf("control endpoint: %v", err)
		}
	}()
	l.markReady()
	log.Printf("control endpoint listening on http://%s (ready)", o.control)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Printf("received %s, shutting down", s)
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = ctl.Shutdown(shutdown)
	fmt.Fprintln(os.Stdout, "vcsim-lab stopped")
}
