package api

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/app"
)

// authError is a refused authentication (401) or authorisation (403).
type authError struct {
	status int
	reason string
	detail string
	actor  string
}

func (e *authError) Error() string { return e.reason + ": " + e.detail }

func unauthenticated(format string, args ...any) *authError {
	return &authError{status: http.StatusUnauthorized, reason: "unauthenticated", detail: fmt.Sprintf(format, args...)}
}

func forbidden(actor, format string, args ...any) *authError {
	return &authError{status: http.StatusForbidden, reason: "forbidden", detail: fmt.Sprintf(format, args...), actor: actor}
}

// replayGuard remembers signatures seen within the time window, so that a
// captured request cannot be sent again.
type replayGuard struct {
	mu   sync.Mutex
	seen map[gm.Signature]time.Time // signature → when it stops mattering
	max  int
}

func (g *replayGuard) use(sig gm.Signature, until, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.seen[sig]; ok {
		return errors.New("this signed request was already used")
	}
	if len(g.seen) >= g.max {
		for s, t := range g.seen {
			if t.Before(now) {
				delete(g.seen, s)
			}
		}
		if len(g.seen) >= g.max {
			return errors.New("too many signed requests in the window; retry shortly")
		}
	}
	g.seen[sig] = until
	return nil
}

// authenticate checks a request's signature headers and returns the
// signing account. body is the request body already read.
func (s *server) authenticate(r *http.Request, body []byte) (*ledger.Account, *authError) {
	keyHex, tsText, sigHex := r.Header.Get(client.HeaderKey), r.Header.Get(client.HeaderTime), r.Header.Get(client.HeaderSignature)
	if keyHex == "" || tsText == "" || sigHex == "" {
		return nil, unauthenticated("sign the request: headers %s, %s and %s are required", client.HeaderKey, client.HeaderTime, client.HeaderSignature)
	}
	raw, err := hex.DecodeString(keyHex)
	if err != nil {
		return nil, unauthenticated("%s is not hex", client.HeaderKey)
	}
	key, err := gm.ParsePublicKey(raw)
	if err != nil {
		return nil, unauthenticated("%s: %v", client.HeaderKey, err)
	}
	actor := key.ID().String()
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return nil, &authError{status: http.StatusUnauthorized, reason: "unauthenticated", detail: client.HeaderTime + " is not a number of milliseconds", actor: actor}
	}
	var sig gm.Signature
	if b, err := hex.DecodeString(sigHex); err != nil || len(b) != len(sig) {
		return nil, &authError{status: http.StatusUnauthorized, reason: "unauthenticated", detail: client.HeaderSignature + " is not 64 bytes of hex", actor: actor}
	} else {
		copy(sig[:], b)
	}
	now := s.cfg.Now()
	if d := time.Duration(now.UnixMilli()-ts) * time.Millisecond; d > s.cfg.AuthWindow || d < -s.cfg.AuthWindow {
		return nil, &authError{status: http.StatusUnauthorized, reason: "unauthenticated", actor: actor,
			detail: fmt.Sprintf("request time is %v from the node's clock, more than %v", d.Round(time.Millisecond), s.cfg.AuthWindow)}
	}
	msg, err := client.APIRequestSignBytes(s.cfg.ChainID, r.Method, r.URL.RequestURI(), gm.SM3(body), ts)
	if err != nil {
		return nil, unauthenticated("%v", err)
	}
	if !key.Verify(msg, sig) {
		return nil, &authError{status: http.StatusUnauthorized, reason: "unauthenticated", detail: "the signature does not verify", actor: actor}
	}
	if err := s.replays.use(sig, time.UnixMilli(ts).Add(s.cfg.AuthWindow), now); err != nil {
		return nil, &authError{status: http.StatusUnauthorized, reason: "unauthenticated", detail: err.Error(), actor: actor}
	}
	acct, err := app.AccountByKey(s.view, ledger.KeyBytes(key))
	if err != nil {
		return nil, &authError{status: http.StatusInternalServerError, reason: "internal", detail: err.Error(), actor: actor}
	}
	if acct == nil {
		return nil, forbidden(actor, "the key is not an account's current key")
	}
	if acct.Frozen {
		return nil, forbidden(acct.Address.String(), "the account is frozen")
	}
	return acct, nil
}
