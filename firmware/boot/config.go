package boot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"hallmark/hsm/tpm"
)

// Paths the init uses.
const (
	// ConfigPath is the init's configuration inside the initramfs.
	ConfigPath = "/etc/hallmark/init.json"
	// DataDir is where the data partition is mounted.
	DataDir = "/data"
	// NetworkFile is the device's network configuration, on the data
	// partition.
	NetworkFile = DataDir + "/network.json"
	// KeyDir holds the device's key files on the data partition: keys
	// sealed by the TPM to the release they belong to, TPM key blobs. The
	// node opens its key from there with hsm.Open; a tpm-sealed key
	// unseals only under the release it was sealed to, because the init
	// has measured the booted slot before the node starts.
	KeyDir = DataDir + "/keys"
)

// Duration is a time.Duration written as a Go duration string in JSON.
type Duration time.Duration

// UnmarshalJSON parses "10s", "2m" and the like.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Config is the init's configuration. It is part of the image (and so of
// the measurement), not of the device.
type Config struct {
	// Node is the command that runs the node.
	Node NodeConfig `json:"node"`
	// TPMDevices are tried in order.
	TPMDevices []string `json:"tpmDevices,omitempty"`
	// CounterIndex is the NV index of the anti-rollback counter; default
	// tpm.FirmwareCounterIndex.
	CounterIndex uint32 `json:"counterIndex,omitempty"`
	// DeviceWait bounds the wait for the disk partitions to appear.
	DeviceWait Duration `json:"deviceWait,omitempty"`
	// CommitAfter is how long the node must stay up after it reported
	// ready before a trial slot commits.
	CommitAfter Duration `json:"commitAfter,omitempty"`
	// TrialTimeout is how long a trial boot may take to commit before the
	// init gives up and reboots into the previous slot.
	TrialTimeout Duration `json:"trialTimeout,omitempty"`
	// BackoffMin and BackoffMax bound the delay before restarting a node
	// that exited; it doubles after every quick exit.
	BackoffMin Duration `json:"backoffMin,omitempty"`
	BackoffMax Duration `json:"backoffMax,omitempty"`
	// DataMountOptions are passed to the data partition's mount.
	DataMountOptions string `json:"dataMountOptions,omitempty"`
	// Updates configures the update service (updates.go).
	Updates UpdatesConfig `json:"updates,omitempty"`
}

// NodeConfig is the node command.
type NodeConfig struct {
	Command []string `json:"command"`
	Env     []string `json:"env,omitempty"`
	// StopTimeout is how long the node gets to exit after SIGTERM.
	StopTimeout Duration `json:"stopTimeout,omitempty"`
}

// withDefaults fills unset fields.
func (c Config) withDefaults() Config {
	if len(c.TPMDevices) == 0 {
		c.TPMDevices = []string{"/dev/tpmrm0", "/dev/tpm0"}
	}
	if c.CounterIndex == 0 {
		c.CounterIndex = uint32(tpm.FirmwareCounterIndex)
	}
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&c.DeviceWait, 30*time.Second)
	def(&c.CommitAfter, 10*time.Second)
	def(&c.TrialTimeout, 3*time.Minute)
	def(&c.BackoffMin, time.Second)
	def(&c.BackoffMax, time.Minute)
	def(&c.Node.StopTimeout, 10*time.Second)
	if c.DataMountOptions == "" {
		c.DataMountOptions = "umask=0077"
	}
	return c
}

// Validate checks the configuration; needCommand says whether the node
// is started from node.command (rather than an in-process hook).
func (c Config) Validate(needCommand bool) error {
	if needCommand && len(c.Node.Command) == 0 {
		return errors.New("boot: config: node.command is empty")
	}
	if c.BackoffMin > c.BackoffMax {
		return errors.New("boot: config: backoffMin exceeds backoffMax")
	}
	if c.CommitAfter >= c.TrialTimeout {
		return errors.New("boot: config: commitAfter must be shorter than trialTimeout")
	}
	if c.Updates.Listen != "" {
		if _, err := c.Updates.Policy(); err != nil {
			return err
		}
	}
	return nil
}

// LoadConfig reads and checks a configuration file. hooked says the node
// is started by an in-process hook, so node.command may be empty.
func LoadConfig(path string, hooked bool) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("boot: config: %w", err)
	}
	var c Config
	if err := strictJSON(b, &c); err != nil {
		return Config{}, fmt.Errorf("boot: config %s: %w", path, err)
	}
	c = c.withDefaults()
	return c, c.Validate(!hooked)
}

// NetworkConfig is the device's network configuration.
type NetworkConfig struct {
	Hostname   string            `json:"hostname,omitempty"`
	Interfaces []InterfaceConfig `json:"interfaces"`
}

// InterfaceConfig configures one interface with static addresses.
type InterfaceConfig struct {
	Name string `json:"name"`
	// Addresses in CIDR form, e.g. "198.18.5.10/24" or "2001:db8::5/64".
	Addresses []string `json:"addresses"`
	// Gateway, if set, becomes the default route of its address family.
	Gateway string `json:"gateway,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
}

// ParseNetworkConfig parses and checks a network configuration.
func ParseNetworkConfig(b []byte) (NetworkConfig, error) {
	var n NetworkConfig
	if err := strictJSON(b, &n); err != nil {
		return n, fmt.Errorf("boot: network config: %w", err)
	}
	if len(n.Hostname) > 64 {
		return n, errors.New("boot: network config: hostname longer than 64 bytes")
	}
	for _, ifc := range n.Interfaces {
		if ifc.Name == "" || len(ifc.Name) > 15 {
			return n, fmt.Errorf("boot: network config: interface name %q", ifc.Name)
		}
		for _, a := range ifc.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				return n, fmt.Errorf("boot: network config: %s: %w", ifc.Name, err)
			}
		}
		if ifc.Gateway != "" {
			if _, err := netip.ParseAddr(ifc.Gateway); err != nil {
				return n, fmt.Errorf("boot: network config: %s gateway: %w", ifc.Name, err)
			}
		}
		if ifc.MTU != 0 && (ifc.MTU < 576 || ifc.MTU > 65535) {
			return n, fmt.Errorf("boot: network config: %s MTU %d", ifc.Name, ifc.MTU)
		}
	}
	return n, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
