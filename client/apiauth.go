package client

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
)

// A node's admin API authenticates requests by SM2 signature: crypto/tls
// cannot carry SM2 client certificates. The client signs the method, the
// request URI, the SM3 digest of the body and a timestamp, bound to the
// chain, and sends the key, time and signature in three headers. The node
// checks the signature, the timestamp against its clock (a window of a
// minute by default), that the signature was not used before within the
// window, and that the key is an account with the role the endpoint needs.
// docs/API.md has the details.

// Header names of an authenticated request.
const (
	HeaderKey       = "X-Hallmark-Key"       // 128 hex digits: the SM2 public key X‖Y
	HeaderTime      = "X-Hallmark-Time"      // ms since 1970 UTC
	HeaderSignature = "X-Hallmark-Signature" // 128 hex digits: r‖s
)

// apiRequestDomain separates API request signatures from every other SM2
// signature.
const apiRequestDomain = "hallmark/api-request/v1\x00"

type apiRequestBody struct {
	ChainID    string    `cbor:"1,keyasint"`
	Method     string    `cbor:"2,keyasint"`
	URI        string    `cbor:"3,keyasint"`
	BodyDigest gm.Digest `cbor:"4,keyasint"`
	Time       int64     `cbor:"5,keyasint"`
}

// APIRequestSignBytes returns what the client signs for a request: the
// domain tag and the canonical CBOR of {1: chain id, 2: method, 3: request
// URI (path and query, as sent), 4: SM3(body), 5: time ms}.
func APIRequestSignBytes(chainID, method, uri string, bodyDigest gm.Digest, timeMs int64) ([]byte, error) {
	enc, err := ledger.Marshal(&apiRequestBody{ChainID: chainID, Method: method, URI: uri, BodyDigest: bodyDigest, Time: timeMs})
	if err != nil {
		return nil, err
	}
	return append([]byte(apiRequestDomain), enc...), nil
}

// SignRequest adds the authentication headers to req, whose body is body
// (nil for none), signing with signer at time now.
func SignRequest(ctx context.Context, req *http.Request, body []byte, signer gm.Signer, chainID string, now time.Time) error {
	ms := now.UnixMilli()
	msg, err := APIRequestSignBytes(chainID, req.Method, req.URL.RequestURI(), gm.SM3(body), ms)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	sig, err := signer.Sign(ctx, msg)
	if err != nil {
		return fmt.Errorf("client: signing the request: %w", err)
	}
	pk := ledger.KeyBytes(signer.PublicKey())
	req.Header.Set(HeaderKey, hex.EncodeToString(pk[:]))
	req.Header.Set(HeaderTime, strconv.FormatInt(ms, 10))
	req.Header.Set(HeaderSignature, hex.EncodeToString(sig[:]))
	return nil
}
