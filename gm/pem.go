package gm

import (
	"crypto/ecdsa"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// PEM block types.
const (
	pemPrivateKey = "PRIVATE KEY"
	pemPublicKey  = "PUBLIC KEY"
)

// MarshalPKCS8 returns the key as unencrypted PKCS#8 DER. Encrypt it before
// it touches a disk (package hsm does).
func (k *PrivateKey) MarshalPKCS8() ([]byte, error) {
	if k.key == nil {
		return nil, ErrWiped
	}
	der, err := smx509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		return nil, fmt.Errorf("gm: marshal PKCS#8: %w", err)
	}
	return der, nil
}

// MarshalPKCS8PEM returns the key as a "PRIVATE KEY" PEM block.
func (k *PrivateKey) MarshalPKCS8PEM() ([]byte, error) {
	der, err := k.MarshalPKCS8()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// ParsePKCS8 parses an unencrypted PKCS#8 SM2 private key.
func ParsePKCS8(der []byte) (*PrivateKey, error) {
	if err := checkSingleDER(der); err != nil {
		return nil, fmt.Errorf("%w: PKCS#8: %v", ErrPrivateKey, err)
	}
	key, err := smx509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: PKCS#8: %v", ErrPrivateKey, err)
	}
	k, ok := key.(*sm2.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: PKCS#8 holds %T, not an SM2 key", ErrPrivateKey, key)
	}
	return wrapPrivateKey(k)
}

// ParsePKCS8PEM parses a "PRIVATE KEY" PEM block.
func ParsePKCS8PEM(data []byte) (*PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemPrivateKey {
		return nil, fmt.Errorf("%w: no %q PEM block", ErrPrivateKey, pemPrivateKey)
	}
	return ParsePKCS8(block.Bytes)
}

// MarshalPKIX returns the public key as SubjectPublicKeyInfo DER.
func (p *PublicKey) MarshalPKIX() ([]byte, error) {
	der, err := smx509.MarshalPKIXPublicKey(p.key)
	if err != nil {
		return nil, fmt.Errorf("gm: marshal PKIX: %w", err)
	}
	return der, nil
}

// MarshalPKIXPEM returns the public key as a "PUBLIC KEY" PEM block.
func (p *PublicKey) MarshalPKIXPEM() ([]byte, error) {
	der, err := p.MarshalPKIX()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// ParsePKIX parses SubjectPublicKeyInfo DER holding an SM2 key.
func ParsePKIX(der []byte) (*PublicKey, error) {
	if err := checkSingleDER(der); err != nil {
		return nil, fmt.Errorf("%w: PKIX: %v", ErrPublicKey, err)
	}
	key, err := smx509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: PKIX: %v", ErrPublicKey, err)
	}
	ek, ok := key.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: PKIX holds %T, not an SM2 key", ErrPublicKey, key)
	}
	return newPublicKey(ek)
}

// ParsePKIXPEM parses a "PUBLIC KEY" PEM block.
func ParsePKIXPEM(data []byte) (*PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemPublicKey {
		return nil, errors.Join(ErrPublicKey, fmt.Errorf("no %q PEM block", pemPublicKey))
	}
	return ParsePKIX(block.Bytes)
}
