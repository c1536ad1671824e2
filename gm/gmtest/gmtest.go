// Package gmtest gives other packages' tests access to the reference SM2
// implementation Hallmark interoperates with (github.com/tjfoc/gmsm, which
// many deployed SDKs sign with), so that only the gm tree imports a GM
// library. Production code must not import it.
package gmtest

import (
	"math/big"

	tjsm2 "github.com/tjfoc/gmsm/sm2"

	"hallmark/gm"
)

// VerifyWithReference reports whether sig verifies over msg under pub
// (default user id) with tjfoc/gmsm, both as r, s integers and as DER.
func VerifyWithReference(pub *gm.PublicKey, msg []byte, sig gm.Signature) bool {
	xy := pub.Bytes()
	tj := &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(big.Int).SetBytes(xy[:32]), Y: new(big.Int).SetBytes(xy[32:])}
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !tjsm2.Sm2Verify(tj, msg, nil, r, s) {
		return false
	}
	der, err := sig.DER()
	return err == nil && tj.Verify(msg, der)
}
