// Package config owns the system's configuration: one struct with the SPEC's
// defaults, loaded from a YAML file, then BPAGENTS_* environment variables,
// then flags, and validated once at start-up with errors that name the field.
//
// It never reads configuration lazily or keeps globals: the composition root
// loads a Config and passes the parts each package needs.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/money"
)

// Config is the whole configuration.
type Config struct {
	// Home holds data/ (database, operator token) and workspaces/.
	Home string `yaml:"home"`
	// Addr is the HTTP listen address.
	Addr string `yaml:"addr"`
	// PublicURL is the API address given to agents as SYSTEM_SERVICE_URL.
	// Empty means http://<addr>. Agents in the docker sandbox always get the
	// API's address on their own network instead.
	PublicURL string `yaml:"public_url"`
	// Sandbox chooses the execution backend: auto (docker when the engine
	// answers and the image exists, else process), docker or process.
	Sandbox string `yaml:"sandbox"`
	// Cycle is the market clearing period.
	Cycle time.Duration `yaml:"cycle"`
	// Database is the store: empty for SQLite at <home>/data/bpagents.db,
	// "sqlite:<path>", or a PostgreSQL URL
	// (postgres://user:password@host:5432/db?sslmode=disable) for several
	// processes sharing one economy. Its password is redacted when the
	// configuration is printed.
	Database string `yaml:"database"`
	// SQLiteSync is SQLite's synchronous mode: FULL or NORMAL.
	SQLiteSync string `yaml:"sqlite_sync"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is auto (text on a terminal, JSON otherwise), text or json.
	LogFormat string `yaml:"log_format"`

	Economy      Economy      `yaml:"economy"`
	Market       Market       `yaml:"market"`
	Genesis      Genesis      `yaml:"genesis"`
	Execution    Execution    `yaml:"execution"`
	Process      Process      `yaml:"process"`
	Docker       Docker       `yaml:"docker"`
	API          API          `yaml:"api"`
	Intelligence Intelligence `yaml:"intelligence"`
	Cluster      Cluster      `yaml:"cluster"`
}

// Economy holds fees and endowments.
type Economy struct {
	GenesisCredits  money.Micro `yaml:"genesis_credits"`
	SpawnFee        money.Micro `yaml:"spawn_fee"`
	MessageFee      money.Micro `yaml:"message_fee"`
	MaxMessageBytes int         `yaml:"max_message_bytes"`
	// RewardWeight is credits minted per score point for each of the three scores.
	RewardWeight money.Micro `yaml:"reward_weight"`
	// PromptTTL is how long a prompt waits for the operator's rating before it expires.
	PromptTTL time.Duration `yaml:"prompt_ttl"`
	// MaxPromptBytes bounds a prompt's content.
	MaxPromptBytes int `yaml:"max_prompt_bytes"`
	// MaxSpawnBytes bounds the total size of files given to a child.
	MaxSpawnBytes int64 `yaml:"max_spawn_bytes"`
	// MaxSpawnFiles bounds the number of files given to or copied into a child.
	MaxSpawnFiles int `yaml:"max_spawn_files"`
}

// Resource configures one market.
type Resource struct {
	// Capacity in the resource's unit (cores for cpu; MB; tokens; attention slots).
	Capacity float64 `yaml:"capacity"`
	// Price is the starting posted price per unit (per core-second for cpu,
	// per MB-second for memory_mb, per token, per attention slot).
	Price   money.Micro `yaml:"price"`
	Floor   money.Micro `yaml:"floor"`
	Ceiling money.Micro `yaml:"ceiling"`
}

// Market configures clearing and prices.
type Market struct {
	Mechanism          string              `yaml:"mechanism"`
	Resources          map[string]Resource `yaml:"resources"`
	TargetLow          float64             `yaml:"target_low"`
	TargetHigh         float64             `yaml:"target_high"`
	StepUp             float64             `yaml:"step_up"`
	StepDown           float64             `yaml:"step_down"`
	BidTTLCycles       int64               `yaml:"bid_ttl_cycles"`
	MaxPendingBids     int64               `yaml:"max_pending_bids"`
	MaxDurationSeconds int64               `yaml:"max_duration_seconds"`
}

// Genesis configures the first agent.
type Genesis struct {
	// Bid is genesis's first bid; its bundle is Bundle.
	Bid             money.Micro `yaml:"bid"`
	CPU             float64     `yaml:"cpu"`
	MemoryMB        int64       `yaml:"memory_mb"`
	DurationSeconds int64       `yaml:"duration_seconds"`
}

// Execution configures how executions run.
type Execution struct {
	// OutputLimit caps captured output per execution (head and tail kept).
	OutputLimit int `yaml:"output_limit"`
	// StopGrace is how long a stopped agent gets between SIGTERM and SIGKILL.
	StopGrace time.Duration `yaml:"stop_grace"`
	// MaxProcs is the process-count limit of every execution.
	MaxProcs int64 `yaml:"max_procs"`
}

// Process configures the process sandbox.
type Process struct {
	// UIDBase: when running as root, agent n runs as uid/gid UIDBase+n. 0 disables.
	UIDBase int `yaml:"uid_base"`
}

// Docker configures the docker sandbox.
type Docker struct {
	// Host is the Docker Engine's address; empty means DOCKER_HOST or the
	// local socket. The engine must run on this machine: workspaces are
	// bind-mounted from the host.
	Host string `yaml:"host"`
	// Image runs every execution.
	Image string `yaml:"image"`
	// Network is the dedicated network executions join; empty means
	// bpagents-<instance id>. It is created when missing and must not be
	// shared with another system instance.
	Network string `yaml:"network"`
	// APIPort is the port the API listens on for agents, at the network's
	// gateway address. 0 means addr's port when it is free there, else any.
	APIPort int `yaml:"api_port"`
	// TmpfsMB is the size of each execution's /tmp.
	TmpfsMB int64 `yaml:"tmpfs_mb"`
	// UIDBase: when running as root, agent n runs as uid/gid UIDBase+n,
	// owner of its workspace. 0, or not root, runs agents as this process's
	// uid/gid.
	UIDBase int `yaml:"uid_base"`
	// Firewall keeps host firewall rules (iptables) that let executions
	// reach the API's port and nothing else on the host. Turning it off
	// leaves every port of the host's gateway address reachable.
	Firewall bool `yaml:"firewall"`
}

// API configures the HTTP server.
type API struct {
	MaxBodyBytes      int64 `yaml:"max_body_bytes"`
	MaxSpawnBodyBytes int64 `yaml:"max_spawn_body_bytes"`
}

// Resource names, in display order.
var ResourceNames = []string{"cpu", "memory_mb", "tokens", "attention"}

// Mechanisms are the known clearing mechanisms.
var Mechanisms = []string{"first-price", "critical"}

// Sandboxes are the known sandbox backends.
var Sandboxes = []string{"auto", "docker", "process"}

// Default returns the SPEC's defaults with home set to the current directory.
func Default() Config {
	return Config{
		Home:       ".",
		Addr:       "127.0.0.1:8000",
		Sandbox:    "auto",
		Cycle:      2 * time.Second,
		SQLiteSync: "FULL",
		LogLevel:   "info",
		LogFormat:  "auto",
		Economy: Economy{
			GenesisCredits:  money.Credits(1000),
			SpawnFee:        money.Credits(100),
			MessageFee:      money.Credits(1),
			MaxMessageBytes: 4096,
			RewardWeight:    money.Credits(50),
			PromptTTL:       time.Hour,
			MaxPromptBytes:  8192,
			MaxSpawnBytes:   4 << 20,
			MaxSpawnFiles:   1000,
		},
		Market: Market{
			Mechanism: "first-price",
			Resources: map[string]Resource{
				"cpu":       {Capacity: float64(runtime.NumCPU()), Price: money.MustParse("0.1"), Floor: money.MustParse("0.001"), Ceiling: money.Credits(100)},
				"memory_mb": {Capacity: 4096, Price: money.MustParse("0.0001"), Floor: money.MustParse("0.000001"), Ceiling: money.Credits(1)},
				"tokens":    {Capacity: 100000, Price: money.MustParse("0.001"), Floor: money.MustParse("0.000001"), Ceiling: money.Credits(1)},
				"attention": {Capacity: 1, Price: money.Credits(5), Floor: money.MustParse("0.1"), Ceiling: money.Credits(10000)},
			},
			TargetLow:          0.3,
			TargetHigh:         0.8,
			StepUp:             0.10,
			StepDown:           0.05,
			BidTTLCycles:       30,
			MaxPendingBids:     8,
			MaxDurationSeconds: 300,
		},
		Genesis: Genesis{
			Bid:             money.Credits(5),
			CPU:             0.5,
			MemoryMB:        256,
			DurationSeconds: 10,
		},
		Execution: Execution{
			OutputLimit: 64 << 10,
			StopGrace:   2 * time.Second,
			MaxProcs:    128,
		},
		Process: Process{UIDBase: 200000},
		Docker: Docker{
			Image:    "bp-agent-runner:latest",
			TmpfsMB:  64,
			UIDBase:  200000,
			Firewall: true,
		},
		API: API{
			MaxBodyBytes:      1 << 20,
			MaxSpawnBodyBytes: 8 << 20,
		},
		Intelligence: defaultIntelligence(),
		Cluster:      defaultCluster(),
	}
}

// FieldError names the configuration field that is wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "config: " + e.Field + ": " + e.Msg }

// Validate checks every field and returns all problems found, each a *FieldError.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Home == "" {
		bad("home", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("addr", "must be HOST:PORT: %v", err)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("public_url", "must be an http(s) URL, got %q", c.PublicURL)
		}
	}
	if !slices.Contains(Sandboxes, c.Sandbox) {
		bad("sandbox", "unknown backend %q (known: %s)", c.Sandbox, strings.Join(Sandboxes, ", "))
	}
	if c.Cycle < 10*time.Millisecond || c.Cycle > time.Hour {
		bad("cycle", "must be between 10ms and 1h, got %s", c.Cycle)
	}
	switch {
	case c.Database == "" || strings.HasPrefix(c.Database, "sqlite:"):
	case c.IsPostgres():
		if u, err := url.Parse(c.Database); err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
			bad("database", "must be postgres://user[:password]@host[:port]/database[?options], got %q",
				redactDatabase(c.Database))
		}
	default:
		bad("database", "must be empty, sqlite:<path> or a postgres:// URL, got %q", redactDatabase(c.Database))
	}
	if s := strings.ToUpper(c.SQLiteSync); s != "FULL" && s != "NORMAL" {
		bad("sqlite_sync", "must be FULL or NORMAL, got %q", c.SQLiteSync)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("log_level", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if !slices.Contains([]string{"auto", "text", "json"}, c.LogFormat) {
		bad("log_format", "must be auto, text or json, got %q", c.LogFormat)
	}
	c.validateEconomy(bad)
	c.validateMarket(bad)
	c.validateRest(bad)
	return errors.Join(errs...)
}

type badFunc func(field, format string, args ...any)

func (c *Config) validateEconomy(bad badFunc) {
	e := c.Economy
	if e.GenesisCredits <= 0 {
		bad("economy.genesis_credits", "must be positive, got %s", e.GenesisCredits)
	}
	if e.SpawnFee < 0 {
		bad("economy.spawn_fee", "must not be negative, got %s", e.SpawnFee)
	}
	if e.MessageFee < 0 {
		bad("economy.message_fee", "must not be negative, got %s", e.MessageFee)
	}
	if e.RewardWeight < 0 {
		bad("economy.reward_weight", "must not be negative, got %s", e.RewardWeight)
	}
	// A rating mints at most 30 points × reward_weight, which must stay a valid amount.
	if e.RewardWeight > money.Max/30 {
		bad("economy.reward_weight", "must be at most %s (a rating of 30 points must mint at most %s), got %s",
			money.Max/30, money.Max, e.RewardWeight)
	}
	if e.PromptTTL < time.Second || e.PromptTTL > 365*24*time.Hour {
		bad("economy.prompt_ttl", "must be between 1s and 8760h, got %s", e.PromptTTL)
	}
	if e.MaxPromptBytes < 1 || e.MaxPromptBytes > 1<<20 {
		bad("economy.max_prompt_bytes", "must be between 1 and 1048576, got %d", e.MaxPromptBytes)
	}
	if e.MaxMessageBytes < 1 || e.MaxMessageBytes > 1<<20 {
		bad("economy.max_message_bytes", "must be between 1 and 1048576, got %d", e.MaxMessageBytes)
	}
	if e.MaxSpawnBytes < 1 {
		bad("economy.max_spawn_bytes", "must be positive, got %d", e.MaxSpawnBytes)
	}
	if e.MaxSpawnFiles < 1 {
		bad("economy.max_spawn_files", "must be positive, got %d", e.MaxSpawnFiles)
	}
}

func (c *Config) validateMarket(bad badFunc) {
	m := c.Market
	if !slices.Contains(Mechanisms, m.Mechanism) {
		bad("market.mechanism", "unknown mechanism %q (known: %s)", m.Mechanism, strings.Join(Mechanisms, ", "))
	}
	for name := range m.Resources {
		if !slices.Contains(ResourceNames, name) {
			bad("market.resources."+name, "unknown resource (known: %s)", strings.Join(ResourceNames, ", "))
		}
	}
	for _, name := range ResourceNames {
		r, ok := m.Resources[name]
		field := "market.resources." + name
		if !ok {
			bad(field, "missing")
			continue
		}
		if r.Capacity < 0 || math.IsNaN(r.Capacity) || math.IsInf(r.Capacity, 0) || r.Capacity > 1e9 {
			bad(field+".capacity", "must be between 0 and 1e9, got %v", r.Capacity)
		}
		if name == "cpu" && r.Capacity <= 0 {
			bad(field+".capacity", "must be positive")
		}
		if name == "memory_mb" && r.Capacity < 1 {
			bad(field+".capacity", "must be at least 1")
		}
		if name != "cpu" && r.Capacity != math.Trunc(r.Capacity) {
			bad(field+".capacity", "must be a whole number, got %v", r.Capacity)
		}
		if r.Floor < 0 || r.Ceiling < r.Floor {
			bad(field, "need 0 <= floor <= ceiling, got floor %s ceiling %s", r.Floor, r.Ceiling)
		}
		if r.Price < r.Floor || r.Price > r.Ceiling {
			bad(field+".price", "must be between floor %s and ceiling %s, got %s", r.Floor, r.Ceiling, r.Price)
		}
	}
	if !(m.TargetLow >= 0 && m.TargetLow < m.TargetHigh && m.TargetHigh <= 1) {
		bad("market.target_low", "need 0 <= target_low < target_high <= 1, got %v and %v", m.TargetLow, m.TargetHigh)
	}
	if !(m.StepUp >= 0 && m.StepUp <= 10) {
		bad("market.step_up", "must be between 0 and 10, got %v", m.StepUp)
	}
	if !(m.StepDown >= 0 && m.StepDown < 1) {
		bad("market.step_down", "must be between 0 and 1 (exclusive), got %v", m.StepDown)
	}
	if m.BidTTLCycles < 1 {
		bad("market.bid_ttl_cycles", "must be at least 1, got %d", m.BidTTLCycles)
	}
	if m.MaxPendingBids < 1 {
		bad("market.max_pending_bids", "must be at least 1, got %d", m.MaxPendingBids)
	}
	if m.MaxDurationSeconds < 1 || m.MaxDurationSeconds > 86400 {
		bad("market.max_duration_seconds", "must be between 1 and 86400, got %d", m.MaxDurationSeconds)
	}
}

func (c *Config) validateRest(bad badFunc) {
	g := c.Genesis
	if g.Bid <= 0 {
		bad("genesis.bid", "must be positive, got %s", g.Bid)
	}
	if g.CPU <= 0 || g.CPU != math.Round(g.CPU*1000)/1000 {
		bad("genesis.cpu", "must be positive with at most 3 decimals, got %v", g.CPU)
	}
	if g.MemoryMB < 1 {
		bad("genesis.memory_mb", "must be at least 1, got %d", g.MemoryMB)
	}
	if g.DurationSeconds < 1 || g.DurationSeconds > c.Market.MaxDurationSeconds {
		bad("genesis.duration_seconds", "must be between 1 and market.max_duration_seconds, got %d", g.DurationSeconds)
	}
	// Genesis must be able to pay for its first bid and to win it, or it
	// never wakes and nothing says why.
	if g.Bid > c.Economy.GenesisCredits {
		bad("genesis.bid", "must not exceed economy.genesis_credits %s, got %s", c.Economy.GenesisCredits, g.Bid)
	}
	if cpu, ok := c.Market.Resources["cpu"]; ok && g.CPU > cpu.Capacity {
		bad("genesis.cpu", "must not exceed market.resources.cpu.capacity %v, got %v", cpu.Capacity, g.CPU)
	}
	if mem, ok := c.Market.Resources["memory_mb"]; ok && float64(g.MemoryMB) > mem.Capacity {
		bad("genesis.memory_mb", "must not exceed market.resources.memory_mb.capacity %v, got %d", mem.Capacity, g.MemoryMB)
	}
	if c.Execution.OutputLimit < 1024 {
		bad("execution.output_limit", "must be at least 1024, got %d", c.Execution.OutputLimit)
	}
	if c.Execution.StopGrace < 0 {
		bad("execution.stop_grace", "must not be negative")
	}
	if c.Execution.MaxProcs < 4 {
		bad("execution.max_procs", "must be at least 4, got %d", c.Execution.MaxProcs)
	}
	if c.Process.UIDBase < 0 || c.Process.UIDBase > 1<<30 {
		bad("process.uid_base", "must be between 0 and 2^30, got %d", c.Process.UIDBase)
	}
	c.validateDocker(bad)
	c.validateIntelligence(bad)
	c.validateCluster(bad)
	if c.API.MaxBodyBytes < 1024 {
		bad("api.max_body_bytes", "must be at least 1024, got %d", c.API.MaxBodyBytes)
	}
	if c.API.MaxSpawnBodyBytes < c.API.MaxBodyBytes {
		bad("api.max_spawn_body_bytes", "must be at least api.max_body_bytes")
	}
}

func (c *Config) validateDocker(bad badFunc) {
	d := c.Docker
	if d.Image == "" || strings.ContainsAny(d.Image, " \t\n") {
		bad("docker.image", "must be an image reference such as bp-agent-runner:latest, got %q", d.Image)
	}
	if d.Network != "" && !validDockerName(d.Network) {
		bad("docker.network", "must start with a letter or digit and hold only letters, digits, '_', '.' and '-' (at most 64), got %q", d.Network)
	}
	if d.APIPort < 0 || d.APIPort > 65535 {
		bad("docker.api_port", "must be between 0 and 65535, got %d", d.APIPort)
	}
	if d.TmpfsMB < 1 || d.TmpfsMB > 1<<20 {
		bad("docker.tmpfs_mb", "must be between 1 and 1048576, got %d", d.TmpfsMB)
	}
	if d.UIDBase < 0 || d.UIDBase > 1<<30 {
		bad("docker.uid_base", "must be between 0 and 2^30, got %d", d.UIDBase)
	}
}

// validDockerName accepts names Docker accepts for networks and containers.
func validDockerName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '_' && r != '.' && r != '-') {
			return false
		}
	}
	return true
}

// DataDir is where the database and operator token live.
func (c *Config) DataDir() string { return filepath.Join(c.Home, "data") }

// WorkspacesDir holds one directory per agent.
func (c *Config) WorkspacesDir() string { return filepath.Join(c.Home, "workspaces") }

// IsPostgres reports whether Database names a PostgreSQL database
// (postgres:// or postgresql://).
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://")
}

// redactDatabase hides a database URL's password.
func redactDatabase(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "[unparsable URL redacted]"
	}
	return u.Redacted()
}

// DatabasePath is the SQLite file (when Database is not a PostgreSQL URL).
func (c *Config) DatabasePath() string {
	if p, ok := strings.CutPrefix(c.Database, "sqlite:"); ok && p != "" {
		return p
	}
	return filepath.Join(c.DataDir(), "bpagents.db")
}

// ServiceURL is the URL agents use to reach the API.
func (c *Config) ServiceURL() string {
	if c.PublicURL != "" {
		return strings.TrimRight(c.PublicURL, "/")
	}
	host, port, _ := net.SplitHostPort(c.Addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
