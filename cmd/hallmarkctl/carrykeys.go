package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hallmark/firmware/boot"
)

func newCarryKeysCmd() *cobra.Command {
	var device string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "carry-keys MANIFEST",
		Short: "Have a running appliance reseal its keys for the release of a signed manifest, before updating it",
		Long: `carry-keys sends a release's signed manifest to the update service of a
running appliance (the image's --update-listen). The appliance checks the
signatures against the release keys built into its image, the target
hardware and its anti-rollback counter, and only then reseals every key
sealed to the running release (NAME@RUNNING.sealed) for the new one
(NAME@NEW.sealed), keeping the running copies for a fallback. Run it
before "hallmarkctl update": a release whose key was not carried to it
cannot open the key, never becomes healthy, and the device falls back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := readManifest(args[0])
			if err != nil {
				return err
			}
			enc, err := m.Encode()
			if err != nil {
				return err
			}
			url := strings.TrimRight(device, "/") + boot.CarryPath
			c := http.Client{Timeout: timeout}
			resp, err := c.Post(url, "application/cbor", bytes.NewReader(enc))
			if err != nil {
				return fmt.Errorf("carry-keys: %w", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				return fmt.Errorf("carry-keys: reading the answer: %w", err)
			}
			var out struct {
				Keys  []boot.Resealed `json:"keys"`
				Error string          `json:"error"`
			}
			if json.Unmarshal(body, &out) != nil || len(out.Keys) == 0 {
				return fmt.Errorf("carry-keys: %s: %s", resp.Status, strings.TrimSpace(string(body)))
			}
			w := cmd.OutOrStdout()
			for _, k := range out.Keys {
				if k.Error != "" {
					fmt.Fprintf(w, "  %s: NOT carried: %s\n", k.Name, k.Error)
					continue
				}
				fmt.Fprintf(w, "  %s: key %s carried to %s\n", k.Name, k.KeyID, k.To)
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("carry-keys: %s: %s", resp.Status, out.Error)
			}
			fmt.Fprintf(w, "release %s can open the device's keys; install it with hallmarkctl update\n", m.Body.Firmware.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "the appliance's update service, e.g. http://198.18.5.10:7409")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for the appliance")
	_ = cmd.MarkFlagRequired("device")
	return cmd
}
