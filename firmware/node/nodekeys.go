package node

import (
	"context"
	"fmt"
	"sync"

	"hallmark/firmware/api"
	"hallmark/firmware/exec"
	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/ledger"
	"hallmark/ledger/app"
)

// nodeKeys carries out the node's side of its key ceremonies for the API:
// a security officer asks the node to create the next key of a rotation
// (in the node's own custody, through the TPM connection the node holds)
// and later, once the rotation is in force, to destroy the retired key.
type nodeKeys struct {
	n  *Node
	mu sync.Mutex // one key operation at a time
}

func (k *nodeKeys) describe(h *heldKey, epoch, state []ledger.PeerConfig) api.NodeKey {
	in := func(set []ledger.PeerConfig) bool {
		for _, p := range set {
			if p.PeerID == h.id() {
				return true
			}
		}
		return false
	}
	return api.NodeKey{
		KeyID: h.id(), PublicKey: ledger.KeyBytes(h.signer.PublicKey()), Ref: h.ref, Custody: h.custody,
		Identity: k.n.identity.Load() == h, InEpoch: in(epoch), InCommitted: in(state),
	}
}

func (k *nodeKeys) sets() (epoch, state []ledger.PeerConfig, err error) {
	epoch = k.n.currentEpoch().Validators.Validators
	vs, err := app.Validators(exec.StoreView(k.n.store))
	if err != nil {
		return nil, nil, err
	}
	return epoch, vs.Validators, nil
}

// List implements api.NodeKeys.
func (k *nodeKeys) List() []api.NodeKey {
	epoch, state, _ := k.sets()
	var out []api.NodeKey
	for _, id := range k.n.ring.ids() {
		if h := k.n.ring.get(id); h != nil {
			out = append(out, k.describe(h, epoch, state))
		}
	}
	return out
}

// Rotate implements api.NodeKeys: it creates the new key at ref, in the
// custody of the current one, and has both sign the rotation statement.
// The node holds both from then on: it keeps voting with the old key until
// the epoch in which the committed rotation takes effect, and with the new
// key after.
func (k *nodeKeys) Rotate(ctx context.Context, ref, reason string) (*api.NodeKeyRotation, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	epoch, state, err := k.sets()
	if err != nil {
		return nil, err
	}
	if ids := k.n.ring.ids(); len(ids) > 1 {
		return nil, fmt.Errorf("%w: the node holds %d keys: a rotation is under way (put its statement on chain and wait for the epoch boundary) or finished (destroy the retired key first)", api.ErrConflict, len(ids))
	}
	cur := k.n.ring.in(state)
	if cur == nil {
		return nil, fmt.Errorf("%w: the committed validator set lists none of this node's keys: there is no validator key to rotate", api.ErrConflict)
	}
	next, st, err := k.n.ring.generate(ctx, ref, cur, k.n.chainID, reason, k.n.now())
	if err != nil {
		return nil, err
	}
	enc, err := hsm.EncodeRotation(st)
	if err != nil {
		return nil, err
	}
	k.n.log.Info("node key rotation prepared: the node holds both keys", "old", cur.id(), "new", next.id(), "ref", next.ref)
	return &api.NodeKeyRotation{Old: k.describe(cur, epoch, state), New: k.describe(next, epoch, state), Statement: enc}, nil
}

// Destroy implements api.NodeKeys. A key still in use is refused: the
// node's identity, one the current epoch's or the committed validator set
// lists, or one the previous epoch lists during its grace.
func (k *nodeKeys) Destroy(ctx context.Context, id gm.KeyID) (*api.NodeKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h := k.n.ring.get(id)
	if h == nil {
		return nil, fmt.Errorf("%w: this node holds no key %s", api.ErrConflict, id)
	}
	epoch, state, err := k.sets()
	if err != nil {
		return nil, err
	}
	d := k.describe(h, epoch, state)
	cur := k.n.currentEpoch()
	switch {
	case d.InEpoch:
		return nil, fmt.Errorf("%w: key %s is a validator key of the current epoch %d: destroy it after the epoch in which its rotation takes effect", api.ErrConflict, id, cur.Epoch())
	case d.InCommitted:
		return nil, fmt.Errorf("%w: key %s is in the committed validator set (the next epoch's): rotate it on chain first", api.ErrConflict, id)
	case d.Identity:
		return nil, fmt.Errorf("%w: key %s is the node's identity", api.ErrConflict, id)
	}
	k.n.mu.Lock()
	inPrev := k.n.prevEpoch != nil && k.n.now().Before(k.n.prevUntil) && k.n.prevEpoch.Validators.IndexOf(id) >= 0
	k.n.mu.Unlock()
	if inPrev {
		return nil, fmt.Errorf("%w: key %s signed in the previous epoch, which peers may still be finishing; retry in %v", api.ErrConflict, id, prevEpochGrace)
	}
	ref, err := k.n.ring.destroy(ctx, id)
	if err != nil {
		return nil, err
	}
	d.Ref = ref
	k.n.log.Info("node key destroyed", "key", id, "ref", ref)
	return &d, nil
}
