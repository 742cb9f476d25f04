// Command pause is the local node's pod sandbox ("infra") container: it holds the pod's
// namespaces open and does nothing else until containerd stops it with SIGTERM (or SIGINT).
//
// The node has no registry to pull registry.k8s.io/pause from, so the project builds its own:
// a static binary in an otherwise empty image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
