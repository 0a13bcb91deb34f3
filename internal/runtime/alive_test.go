package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestProcessAlive: a running process is alive; one that has exited but not
// been reaped yet (a zombie, as a runner killed a moment ago may be) is not,
// so a restarted runner can take over its registration at once; nor is one
// that is gone.
func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for !isZombie(pid) { // exited, not yet waited for
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not become a zombie", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if processAlive(pid) {
		t.Errorf("zombie %d counts as alive", pid)
	}
	cmd.Wait()
	if processAlive(pid) {
		t.Errorf("reaped process %d counts as alive", pid)
	}
	if processAlive(0) || processAlive(-1) {
		t.Error("pid 0 or -1 counts as alive")
	}
}

func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == 'Z'
		}
	}
	return false
}
