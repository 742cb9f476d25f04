// Command probe reports, over HTTP, what kernel a pod really runs on, so e2e tests can tell a
// gVisor sandbox from an ordinary runc container, and whether the pod can reach an address.
//
// GET /probe[?target=host:port] answers JSON:
//
//	kernel      /proc/version as the pod sees it
//	uname       the release from uname(2)
//	dmesg_head  the first lines of the kernel log (syslog(2), else /dev/kmsg), if readable;
//	            gVisor's own log starts with "Starting gVisor..."
//	dmesg_error why the kernel log was not readable (a runc pod usually may not read it)
//	token       whether a service-account token is mounted
//	egress      "ok" or the error of a TCP connect to target within 2 seconds
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const (
	tokenPath      = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	dmesgLines     = 5
	syslogReadAll  = 3 // SYSLOG_ACTION_READ_ALL
	kmsgReadBuffer = 8192
)

type report struct {
	Kernel     string `json:"kernel"`
	Uname      string `json:"uname"`
	DmesgHead  string `json:"dmesg_head"`
	DmesgError string `json:"dmesg_error,omitempty"`
	Token      bool   `json:"token"`
	Egress     string `json:"egress,omitempty"`
}

func main() {
	http.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(probe(r.URL.Query().Get("target")))
	})
	server := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		_ = server.Close()
	}()
	log.Printf("probe listening on %s", server.Addr)
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

func probe(target string) report {
	var out report
	if version, err := os.ReadFile("/proc/version"); err == nil {
		out.Kernel = strings.TrimSpace(string(version))
	}
	var uts syscall.Utsname
	if err := syscall.Uname(&uts); err == nil {
		out.Uname = cString(uts.Release[:])
	}
	out.DmesgHead, out.DmesgError = dmesg()
	_, err := os.Stat(tokenPath)
	out.Token = err == nil
	if target != "" {
		conn, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			out.Egress = err.Error()
		} else {
			out.Egress = "ok"
			_ = conn.Close()
		}
	}
	return out
}

// dmesg reads the kernel log with syslog(2) as dmesg does, falling back to /dev/kmsg.
func dmesg() (string, string) {
	buf := make([]byte, 1<<16)
	n, err := syscall.Klogctl(syslogReadAll, buf)
	if err == nil && n > 0 {
		return head(string(buf[:n])), ""
	}
	kmsg, kerr := os.OpenFile("/dev/kmsg", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if kerr != nil {
		return "", fmt.Sprintf("syslog: %v; /dev/kmsg: %v", err, kerr)
	}
	defer kmsg.Close()
	var lines []string
	var rerr error
	record := make([]byte, kmsgReadBuffer)
	for len(lines) < dmesgLines {
		var n int
		n, rerr = kmsg.Read(record)
		if rerr != nil || n == 0 {
			break
		}
		// "<prio>,<seq>,<time>,<flags>;message"
		if _, message, ok := bytes.Cut(record[:n], []byte(";")); ok {
			lines = append(lines, strings.TrimSpace(string(message)))
		}
	}
	if len(lines) == 0 {
		return "", fmt.Sprintf("syslog: %v; /dev/kmsg: %v", err, rerr)
	}
	return strings.Join(lines, "\n"), ""
}

func head(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) > dmesgLines {
		lines = lines[:dmesgLines]
	}
	return strings.Join(lines, "\n")
}

func cString(chars []int8) string {
	var b strings.Builder
	for _, c := range chars {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}
