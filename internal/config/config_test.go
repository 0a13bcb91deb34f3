package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/money"
)

// fieldErrors returns every *FieldError inside err (Validate and Load join
// several), and fails if err holds anything else.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if joined, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range joined.Unwrap() {
				walk(inner)
			}
			return
		}
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %q (%T) is not a *FieldError", e, e)
		}
		out = append(out, fe)
	}
	walk(err)
	return out
}

func fieldNames(errs []*FieldError) []string {
	var names []string
	for _, fe := range errs {
		if !slices.Contains(names, fe.Field) {
			names = append(names, fe.Field)
		}
	}
	slices.Sort(names)
	return names
}

func TestDefaultValidates(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	// The SPEC's defaults.
	if c.Economy.GenesisCredits != money.Credits(1000) || c.Economy.SpawnFee != money.Credits(100) ||
		c.Economy.MessageFee != money.Credits(1) || c.Economy.RewardWeight != money.Credits(50) {
		t.Fatalf("economy defaults differ from the SPEC: %+v", c.Economy)
	}
	if c.Cycle != 2*time.Second || c.Market.Mechanism != "first-price" {
		t.Fatalf("cycle %s mechanism %s", c.Cycle, c.Market.Mechanism)
	}
	for _, name := range ResourceNames {
		if _, ok := c.Market.Resources[name]; !ok {
			t.Fatalf("default has no resource %s", name)
		}
	}
	if c.Market.Resources["attention"].Capacity != 1 {
		t.Fatalf("attention capacity %v, want 1", c.Market.Resources["attention"].Capacity)
	}
	// Each call returns its own map.
	c.Market.Resources["cpu"] = Resource{}
	if Default().Market.Resources["cpu"].Price == 0 {
		t.Fatal("Default shares its resources map between calls")
	}
}

func TestValidateNamesTheField(t *testing.T) {
	t.Parallel()
	setResource := func(name string, f func(*Resource)) func(*Config) {
		return func(c *Config) {
			r := c.Market.Resources[name]
			f(&r)
			c.Market.Resources[name] = r
		}
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		fields []string // every field the error must name, and only those
	}{
		{"empty home", func(c *Config) { c.Home = "" }, []string{"home"}},
		{"addr without port", func(c *Config) { c.Addr = "localhost" }, []string{"addr"}},
		{"public url not http", func(c *Config) { c.PublicURL = "ftp://example.com" }, []string{"public_url"}},
		{"public url without host", func(c *Config) { c.PublicURL = "http://" }, []string{"public_url"}},
		{"unknown sandbox", func(c *Config) { c.Sandbox = "vm" }, []string{"sandbox"}},
		{"cycle too short", func(c *Config) { c.Cycle = time.Millisecond }, []string{"cycle"}},
		{"cycle too long", func(c *Config) { c.Cycle = 2 * time.Hour }, []string{"cycle"}},
		{"database neither sqlite nor postgres", func(c *Config) { c.Database = "mysql://u@db/x" }, []string{"database"}},
		{"postgres without a host", func(c *Config) { c.Database = "postgres:///bpagents" }, []string{"database"}},
		{"postgres without a database", func(c *Config) { c.Database = "postgresql://u@db:5432" }, []string{"database"}},
		{"sqlite sync", func(c *Config) { c.SQLiteSync = "OFF" }, []string{"sqlite_sync"}},
		{"log level", func(c *Config) { c.LogLevel = "trace" }, []string{"log_level"}},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, []string{"log_format"}},
		{"genesis credits zero", func(c *Config) { c.Economy.GenesisCredits = 0 }, []string{"economy.genesis_credits", "genesis.bid"}},
		{"spawn fee negative", func(c *Config) { c.Economy.SpawnFee = -1 }, []string{"economy.spawn_fee"}},
		{"message fee negative", func(c *Config) { c.Economy.MessageFee = -1 }, []string{"economy.message_fee"}},
		{"reward weight negative", func(c *Config) { c.Economy.RewardWeight = -1 }, []string{"economy.reward_weight"}},
		{"message bytes zero", func(c *Config) { c.Economy.MaxMessageBytes = 0 }, []string{"economy.max_message_bytes"}},
		{"message bytes huge", func(c *Config) { c.Economy.MaxMessageBytes = 2 << 20 }, []string{"economy.max_message_bytes"}},
		{"spawn bytes zero", func(c *Config) { c.Economy.MaxSpawnBytes = 0 }, []string{"economy.max_spawn_bytes"}},
		{"spawn files zero", func(c *Config) { c.Economy.MaxSpawnFiles = 0 }, []string{"economy.max_spawn_files"}},
		{"unknown mechanism", func(c *Config) { c.Market.Mechanism = "vickrey" }, []string{"market.mechanism"}},
		{"unknown resource", func(c *Config) { c.Market.Resources["gpu"] = Resource{Capacity: 1} }, []string{"market.resources.gpu"}},
		{"missing resource", func(c *Config) { delete(c.Market.Resources, "tokens") }, []string{"market.resources.tokens"}},
		{"cpu capacity zero", setResource("cpu", func(r *Resource) { r.Capacity = 0 }),
			[]string{"genesis.cpu", "market.resources.cpu.capacity"}},
		{"cpu capacity NaN", setResource("cpu", func(r *Resource) { r.Capacity = math.NaN() }), []string{"market.resources.cpu.capacity"}},
		{"memory capacity infinite", setResource("memory_mb", func(r *Resource) { r.Capacity = math.Inf(1) }), []string{"market.resources.memory_mb.capacity"}},
		{"memory capacity below one", setResource("memory_mb", func(r *Resource) { r.Capacity = 0 }),
			[]string{"genesis.memory_mb", "market.resources.memory_mb.capacity"}},
		{"tokens capacity negative", setResource("tokens", func(r *Resource) { r.Capacity = -1 }), []string{"market.resources.tokens.capacity"}},
		{"tokens capacity fractional", setResource("tokens", func(r *Resource) { r.Capacity = 1.5 }), []string{"market.resources.tokens.capacity"}},
		{"attention capacity too large", setResource("attention", func(r *Resource) { r.Capacity = 2e9 }), []string{"market.resources.attention.capacity"}},
		{"floor above ceiling", setResource("attention", func(r *Resource) {
			r.Floor, r.Ceiling, r.Price = money.Credits(20), money.Credits(10), money.Credits(10)
		}), []string{"market.resources.attention", "market.resources.attention.price"}},
		{"negative floor", setResource("cpu", func(r *Resource) { r.Floor = -1 }), []string{"market.resources.cpu"}},
		{"price above ceiling", setResource("tokens", func(r *Resource) { r.Price = money.Credits(2) }), []string{"market.resources.tokens.price"}},
		{"price below floor", setResource("cpu", func(r *Resource) { r.Price = 1 }), []string{"market.resources.cpu.price"}},
		{"targets crossed", func(c *Config) { c.Market.TargetLow, c.Market.TargetHigh = 0.9, 0.5 }, []string{"market.target_low"}},
		{"target high above one", func(c *Config) { c.Market.TargetHigh = 1.5 }, []string{"market.target_low"}},
		{"target NaN", func(c *Config) { c.Market.TargetLow = math.NaN() }, []string{"market.target_low"}},
		{"step up too big", func(c *Config) { c.Market.StepUp = 11 }, []string{"market.step_up"}},
		{"step up NaN", func(c *Config) { c.Market.StepUp = math.NaN() }, []string{"market.step_up"}},
		{"step down one", func(c *Config) { c.Market.StepDown = 1 }, []string{"market.step_down"}},
		{"step down negative", func(c *Config) { c.Market.StepDown = -0.1 }, []string{"market.step_down"}},
		{"bid ttl zero", func(c *Config) { c.Market.BidTTLCycles = 0 }, []string{"market.bid_ttl_cycles"}},
		{"pending bids zero", func(c *Config) { c.Market.MaxPendingBids = 0 }, []string{"market.max_pending_bids"}},
		{"max duration zero", func(c *Config) { c.Market.MaxDurationSeconds = 0 },
			[]string{"genesis.duration_seconds", "market.max_duration_seconds"}},
		{"max duration above a day", func(c *Config) { c.Market.MaxDurationSeconds = 86401 }, []string{"market.max_duration_seconds"}},
		{"genesis bid zero", func(c *Config) { c.Genesis.Bid = 0 }, []string{"genesis.bid"}},
		{"genesis cpu zero", func(c *Config) { c.Genesis.CPU = 0 }, []string{"genesis.cpu"}},
		{"genesis cpu below a millicore", func(c *Config) { c.Genesis.CPU = 0.0005 }, []string{"genesis.cpu"}},
		{"genesis memory zero", func(c *Config) { c.Genesis.MemoryMB = 0 }, []string{"genesis.memory_mb"}},
		// Genesis must afford and fit its first bid, or it never wakes.
		{"genesis bid above its credits", func(c *Config) { c.Genesis.Bid = c.Economy.GenesisCredits + 1 }, []string{"genesis.bid"}},
		{"genesis cpu above capacity", setResource("cpu", func(r *Resource) { r.Capacity = 0.25 }), []string{"genesis.cpu"}},
		{"genesis memory above capacity", setResource("memory_mb", func(r *Resource) { r.Capacity = 128 }), []string{"genesis.memory_mb"}},
		{"genesis duration zero", func(c *Config) { c.Genesis.DurationSeconds = 0 }, []string{"genesis.duration_seconds"}},
		{"genesis duration above max", func(c *Config) { c.Genesis.DurationSeconds = c.Market.MaxDurationSeconds + 1 },
			[]string{"genesis.duration_seconds"}},
		{"output limit small", func(c *Config) { c.Execution.OutputLimit = 100 }, []string{"execution.output_limit"}},
		{"stop grace negative", func(c *Config) { c.Execution.StopGrace = -time.Second }, []string{"execution.stop_grace"}},
		{"max procs small", func(c *Config) { c.Execution.MaxProcs = 3 }, []string{"execution.max_procs"}},
		{"uid base negative", func(c *Config) { c.Process.UIDBase = -1 }, []string{"process.uid_base"}},
		{"uid base huge", func(c *Config) { c.Process.UIDBase = 1<<30 + 1 }, []string{"process.uid_base"}},
		{"body small", func(c *Config) { c.API.MaxBodyBytes = 100 },
			[]string{"api.max_body_bytes"}},
		{"spawn body below body", func(c *Config) { c.API.MaxSpawnBodyBytes = c.API.MaxBodyBytes - 1 },
			[]string{"api.max_spawn_body_bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted the broken config")
			}
			errs := fieldErrors(t, err)
			want := slices.Clone(tc.fields)
			slices.Sort(want)
			if got := fieldNames(errs); !slices.Equal(got, want) {
				t.Fatalf("fields %v, want %v (error: %v)", got, want, err)
			}
			for _, fe := range errs {
				if fe.Msg == "" || !strings.Contains(err.Error(), "config: "+fe.Field+": ") {
					t.Fatalf("error text %q does not name %s with a message", err, fe.Field)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Home, c.Sandbox, c.Market.BidTTLCycles = "", "nope", 0
	got := fieldNames(fieldErrors(t, c.Validate()))
	want := []string{"home", "market.bid_ttl_cycles", "sandbox"}
	if !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
}

func TestPaths(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Home = "/srv/bp"
	if c.DataDir() != "/srv/bp/data" || c.WorkspacesDir() != "/srv/bp/workspaces" {
		t.Fatalf("dirs %s %s", c.DataDir(), c.WorkspacesDir())
	}
	if c.DatabasePath() != "/srv/bp/data/bpagents.db" {
		t.Fatalf("default database path %s", c.DatabasePath())
	}
	c.Database = "sqlite:/tmp/x.db"
	if c.DatabasePath() != "/tmp/x.db" {
		t.Fatalf("database path %s", c.DatabasePath())
	}
	tests := []struct {
		addr, public, want string
	}{
		{"127.0.0.1:8000", "", "http://127.0.0.1:8000"},
		{"0.0.0.0:9000", "", "http://127.0.0.1:9000"},
		{":8080", "", "http://127.0.0.1:8080"},
		{"[::]:8080", "", "http://127.0.0.1:8080"},
		{"[::1]:8080", "", "http://[::1]:8080"},
		{"0.0.0.0:9000", "https://bp.example.com/", "https://bp.example.com"},
	}
	for _, tc := range tests {
		c.Addr, c.PublicURL = tc.addr, tc.public
		if got := c.ServiceURL(); got != tc.want {
			t.Errorf("ServiceURL(addr %s, public %q) = %s, want %s", tc.addr, tc.public, got, tc.want)
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bpagents.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	p := writeFile(t, `
home: /srv/bp
cycle: 500ms
sandbox: process
economy:
  spawn_fee: 7.5
  message_fee: "0.25"
market:
  mechanism: critical
  bid_ttl_cycles: 12
  resources:
    cpu:
      capacity: 3
    attention:
      price: 6
genesis:
  cpu: 0.25
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	def := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"home", c.Home, "/srv/bp"},
		{"cycle", c.Cycle, 500 * time.Millisecond},
		{"sandbox", c.Sandbox, "process"},
		{"spawn_fee", c.Economy.SpawnFee, money.MustParse("7.5")},
		{"message_fee", c.Economy.MessageFee, money.MustParse("0.25")},
		{"genesis_credits untouched", c.Economy.GenesisCredits, def.Economy.GenesisCredits},
		{"mechanism", c.Market.Mechanism, "critical"},
		{"bid_ttl_cycles", c.Market.BidTTLCycles, int64(12)},
		{"max_pending_bids untouched", c.Market.MaxPendingBids, def.Market.MaxPendingBids},
		{"cpu capacity", c.Market.Resources["cpu"].Capacity, 3.0},
		// Setting one field of a resource keeps its other fields.
		{"cpu price kept", c.Market.Resources["cpu"].Price, def.Market.Resources["cpu"].Price},
		{"cpu floor kept", c.Market.Resources["cpu"].Floor, def.Market.Resources["cpu"].Floor},
		{"cpu ceiling kept", c.Market.Resources["cpu"].Ceiling, def.Market.Resources["cpu"].Ceiling},
		{"attention price", c.Market.Resources["attention"].Price, money.Credits(6)},
		{"attention capacity kept", c.Market.Resources["attention"].Capacity, 1.0},
		{"memory untouched", c.Market.Resources["memory_mb"], def.Market.Resources["memory_mb"]},
		{"genesis cpu", c.Genesis.CPU, 0.25},
		{"genesis memory untouched", c.Genesis.MemoryMB, def.Genesis.MemoryMB},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestLoadFileRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, content, mention string
	}{
		{"unknown top-level key", "hme: /x\n", "hme"},
		{"unknown nested key", "economy:\n  spawn_feee: 3\n", "spawn_feee"},
		{"unknown resource field", "market:\n  resources:\n    cpu:\n      capcity: 3\n", "capcity"},
		{"amount with exponent", "economy:\n  spawn_fee: 1e3\n", "1e3"},
		{"amount too precise", "economy:\n  spawn_fee: 0.0000001\n", "0.0000001"},
		{"bad duration", "cycle: soon\n", "soon"},
		{"wrong type", "market:\n  max_pending_bids: many\n", "many"},
		{"not a mapping", "- a\n- b\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := writeFile(t, tc.content)
			_, err := Load(p, nil)
			if err == nil {
				t.Fatal("Load accepted the file")
			}
			if !strings.Contains(err.Error(), tc.mention) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q does not mention %q and the file", err, tc.mention)
			}
		})
	}
}

func TestLoadEmptyAndMissing(t *testing.T) {
	t.Parallel()
	c, err := Load(writeFile(t, ""), nil)
	if err != nil {
		t.Fatalf("empty file: %v", err)
	}
	if err := c.Validate(); err != nil || c.Cycle != Default().Cycle {
		t.Fatalf("empty file should give the defaults: %v", err)
	}
	c, err = Load("", nil)
	if err != nil || c.Addr != Default().Addr {
		t.Fatalf("no file: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestLoadEnv(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "cycle: 3s\neconomy:\n  spawn_fee: 50\n")
	environ := []string{
		"PATH=/usr/bin",
		"BPAGENTS_CYCLE=500ms",
		"BPAGENTS_ECONOMY_SPAWN_FEE=7.5",
		"BPAGENTS_MARKET_RESOURCES_CPU_CAPACITY=3",
		"BPAGENTS_MARKET_RESOURCES_MEMORY_MB_PRICE=0.0002",
		"BPAGENTS_MARKET_MECHANISM=critical",
		"BPAGENTS_GENESIS_CPU=0.25",
		"BPAGENTS_EXECUTION_STOP_GRACE=1s",
		"BPAGENTS_PUBLIC_URL=http://bp.example/?a=b",
		"BPAGENTS_HOME=/srv/bp",
		"BPAGENTS_NOT_A_SETTING=1",
		"CYCLE=1h",
		"malformed",
	}
	c, err := Load(p, environ)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	def := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"cycle (env beats file)", c.Cycle, 500 * time.Millisecond},
		{"spawn fee (env beats file)", c.Economy.SpawnFee, money.MustParse("7.5")},
		{"cpu capacity", c.Market.Resources["cpu"].Capacity, 3.0},
		{"cpu price kept", c.Market.Resources["cpu"].Price, def.Market.Resources["cpu"].Price},
		{"memory price", c.Market.Resources["memory_mb"].Price, money.MustParse("0.0002")},
		{"memory capacity kept", c.Market.Resources["memory_mb"].Capacity, def.Market.Resources["memory_mb"].Capacity},
		{"mechanism", c.Market.Mechanism, "critical"},
		{"genesis cpu", c.Genesis.CPU, 0.25},
		{"stop grace", c.Execution.StopGrace, time.Second},
		{"public url keeps '='", c.PublicURL, "http://bp.example/?a=b"},
		{"home", c.Home, "/srv/bp"},
		{"message fee untouched", c.Economy.MessageFee, def.Economy.MessageFee},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestLoadEnvRefusesBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env, field string
	}{
		{"BPAGENTS_CYCLE=fast", "cycle"},
		{"BPAGENTS_ECONOMY_SPAWN_FEE=1e3", "economy.spawn_fee"},
		{"BPAGENTS_ECONOMY_SPAWN_FEE=abc", "economy.spawn_fee"},
		{"BPAGENTS_ECONOMY_MESSAGE_FEE=0.0000001", "economy.message_fee"},
		{"BPAGENTS_MARKET_RESOURCES_CPU_CAPACITY=lots", "market.resources.cpu.capacity"},
		{"BPAGENTS_MARKET_MAX_PENDING_BIDS=many", "market.max_pending_bids"},
		{"BPAGENTS_MARKET_TARGET_LOW=low", "market.target_low"},
		{"BPAGENTS_PROCESS_UID_BASE=[1]", "process.uid_base"},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			_, err := Load("", []string{tc.env})
			if err == nil {
				t.Fatal("Load accepted the bad value")
			}
			errs := fieldErrors(t, err)
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Fatalf("errors %v, want one naming %s", err, tc.field)
			}
			name, _, _ := strings.Cut(tc.env, "=")
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error %q does not name the variable %s", err, name)
			}
		})
	}
	// Several bad variables are all reported.
	_, err := Load("", []string{"BPAGENTS_CYCLE=x", "BPAGENTS_GENESIS_BID=y"})
	if got := fieldNames(fieldErrors(t, err)); !slices.Equal(got, []string{"cycle", "genesis.bid"}) {
		t.Fatalf("fields %v", got)
	}
}

func TestEnvVars(t *testing.T) {
	t.Parallel()
	vars := EnvVars()
	want := map[string]string{
		"BPAGENTS_HOME":                             "home",
		"BPAGENTS_CYCLE":                            "cycle",
		"BPAGENTS_ECONOMY_SPAWN_FEE":                "economy.spawn_fee",
		"BPAGENTS_MARKET_RESOURCES_CPU_CAPACITY":    "market.resources.cpu.capacity",
		"BPAGENTS_MARKET_RESOURCES_MEMORY_MB_PRICE": "market.resources.memory_mb.price",
		"BPAGENTS_API_MAX_SPAWN_BODY_BYTES":         "api.max_spawn_body_bytes",
	}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("EnvVars()[%s] = %q, want %q", k, vars[k], v)
		}
	}
	for k := range vars {
		if !strings.HasPrefix(k, EnvPrefix) || strings.ContainsAny(k, ".-") || k != strings.ToUpper(k) {
			t.Errorf("bad variable name %q", k)
		}
	}
	// Every variable listed is understood by Load.
	for k, path := range vars {
		if _, err := Load("", []string{k + "=[not valid for anything but a string]"}); err == nil {
			continue // string fields accept anything
		} else if fe := fieldErrors(t, err); len(fe) != 1 || fe[0].Field != path {
			t.Errorf("%s: error %v does not name %s", k, err, path)
		}
	}
}

func TestPostgresDatabase(t *testing.T) {
	t.Parallel()
	for _, db := range []string{
		"postgres://bpagents@127.0.0.1:5432/bpagents?sslmode=disable",
		"postgresql://bp:s3cret@db.internal/economy",
	} {
		c := Default()
		c.Database = db
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate(%s): %v", db, err)
		}
		if !c.IsPostgres() {
			t.Fatalf("IsPostgres(%s) = false", db)
		}
	}
	c := Default()
	c.Database = "postgres://bp:s3cret@db:5432/economy?sslmode=require"
	r := c.Redacted()
	if strings.Contains(r.Database, "s3cret") || r.Database != "postgres://bp:xxxxx@db:5432/economy?sslmode=require" {
		t.Fatalf("Redacted database = %q", r.Database)
	}
	if c.Database != "postgres://bp:s3cret@db:5432/economy?sslmode=require" {
		t.Fatal("Redacted changed the original")
	}
	c.Database = "postgres://bp:s3cret@/economy"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "database") {
		t.Fatalf("Validate of a URL without host: %v", err)
	}
	for _, db := range []string{"", "sqlite:/tmp/x.db"} {
		c.Database = db
		if c.IsPostgres() || c.Redacted().Database != db {
			t.Fatalf("%q taken for postgres or changed by Redacted", db)
		}
	}
}
