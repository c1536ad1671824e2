package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hallmark/firmware/boot"
	"hallmark/images"
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

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// installRemote sends a release to a running appliance's update service.
func installRemote(cmd *cobra.Command, url, payload string, m *images.Manifest) error {
	enc, err := m.Encode()
	if err != nil {
		return err
	}
	f, err := os.Open(payload)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != int64(m.Body.Firmware.SlotSize) {
		return fmt.Errorf("%s has %d bytes, the manifest says %d", payload, fi.Size(), m.Body.Firmware.SlotSize)
	}
	// Stream the multipart body: the slot payload can be large.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	p := newProgress(cmd.ErrOrStderr())
	go func() {
		err := func() error {
			w, err := mw.CreateFormFile("manifest", filepath.Base(payload)+".manifest")
			if err != nil {
				return err
			}
			if _, err := w.Write(enc); err != nil {
				return err
			}
			if w, err = mw.CreateFormFile("slot", filepath.Base(payload)); err != nil {
				return err
			}
			if _, err := io.Copy(w, &progressReader{r: f, total: fi.Size(), report: func(done, total int64) { p.update("send", done, total) }}); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, strings.TrimRight(url, "/")+boot.InstallPath, pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	p.finish()
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("update: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var inst boot.Installed
	if err := json.Unmarshal(body, &inst); err != nil {
		return fmt.Errorf("update: answer %q: %w", body, err)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "installed %s (security version %d) into slot %s of %s: %d bytes written and read back in %v\n",
		inst.Version, inst.SecurityVersion, inst.Slot, url, inst.Written, inst.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  slot %s boots once on trial at the next boot and commits when the node is healthy\n", inst.Slot)
	return nil
}

// progressReader reports how much of a stream was read.
type progressReader struct {
	r      io.Reader
	done   int64
	total  int64
	report func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.report(p.done, p.total)
	return n, err
}
