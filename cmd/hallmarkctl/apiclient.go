package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
)

// Environment variables the API commands read.
const (
	envAPI = "HALLMARK_API"
	// defaultAPI is node 0 of `make run`'s local consortium.
	defaultAPI = "http://127.0.0.1:7402"
)

// apiClient talks to one node's HTTP API.
type apiClient struct {
	base string
	http *http.Client
}

func newAPIClient(base string) *apiClient {
	base = strings.TrimRight(base, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &apiClient{base: base, http: &http.Client{Timeout: 30 * time.Second}}
}

// apiError is an error answer from a node.
type apiError struct {
	Status int
	Body   []byte
}

func (e *apiError) Error() string {
	var eb struct {
		Error struct {
			Code   uint16 `json:"code"`
			Reason string `json:"reason"`
			Detail string `json:"detail"`
		} `json:"error"`
	}
	if json.Unmarshal(e.Body, &eb) == nil && eb.Error.Reason != "" {
		msg := fmt.Sprintf("node answered %d: %s", e.Status, eb.Error.Reason)
		if eb.Error.Code != 0 {
			msg += fmt.Sprintf(" (code %d)", eb.Error.Code)
		}
		if eb.Error.Detail != "" {
			msg += ": " + eb.Error.Detail
		}
		return msg
	}
	return fmt.Sprintf("node answered %d: %s", e.Status, strings.TrimSpace(string(e.Body)))
}

// do sends a request and returns the body of a 2xx answer. With signer
// set, the request is signed for the admin API.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, contentType string, signer gm.Signer, chainID string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if signer != nil {
		if err := client.SignRequest(ctx, req, body, signer, chainID, time.Now()); err != nil {
			return nil, 0, err
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, resp.StatusCode, &apiError{Status: resp.StatusCode, Body: b}
	}
	return b, resp.StatusCode, nil
}

func (c *apiClient) getJSON(ctx context.Context, path string, out any) error {
	b, _, err := c.do(ctx, "GET", path, nil, "", nil, "")
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// chainID asks the node which chain it serves.
func (c *apiClient) chainID(ctx context.Context) (string, error) {
	var st struct {
		ChainID string `json:"chainId"`
	}
	if err := c.getJSON(ctx, "/v1/status", &st); err != nil {
		return "", err
	}
	if st.ChainID == "" {
		return "", errors.New("the node did not say its chain id")
	}
	return st.ChainID, nil
}

// loadSigner opens an account key: a PKCS#8 PEM file (development
// accounts, as `make run` writes them) or an hsm key reference.
func loadSigner(ctx context.Context, ref, tpmAddr string) (gm.Signer, func() error, error) {
	if b, err := os.ReadFile(ref); err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		k, err := gm.ParsePKCS8PEM(b)
		if err != nil {
			return nil, nil, fmt.Errorf("key file %s: %w", ref, err)
		}
		return k, func() error { k.Wipe(); return nil }, nil
	}
	opts := hsm.Options{TPM: tpm.Config{Addr: tpmAddr}}
	if p := os.Getenv(envPassphrase); p != "" {
		opts.Passphrase = []byte(p)
	}
	s, err := hsm.Open(ctx, ref, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("opening key %q: %w", ref, err)
	}
	return s, s.Close, nil
}

// printJSON pretty-prints a JSON document.
func printJSON(w io.Writer, b []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		_, err = w.Write(b)
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}
