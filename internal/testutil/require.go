// Package testutil holds helpers shared by tests, and one rule: a test that
// needs a service (root and cgroups, Docker, PostgreSQL, Chromium, python3)
// skips, saying why, when the service is absent, unless
// BPAGENTS_TEST_REQUIRE=all (or a comma list naming the service) is set, in
// which case it fails, so CI can never pass by skipping. Only tests and test
// helper packages (such as pgtest) may import it, never the product's code.
package testutil

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Required reports whether the environment demands service be present.
func Required(service string) bool {
	v := os.Getenv("BPAGENTS_TEST_REQUIRE")
	if v == "all" {
		return true
	}
	return slices.Contains(strings.Split(v, ","), service)
}

// Need skips (or fails, when required) the test if ok is false.
func Need(t testing.TB, service string, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if Required(service) {
		t.Fatalf("%s is required (BPAGENTS_TEST_REQUIRE=%s) but unavailable: %s", service, os.Getenv("BPAGENTS_TEST_REQUIRE"), why)
	}
	t.Skipf("skipping: %s unavailable: %s (set BPAGENTS_TEST_REQUIRE=all to make this a failure)", service, why)
}
