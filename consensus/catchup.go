package consensus

import (
	"fmt"

	"hallmark/gm"
	"hallmark/ledger"
)

// needBlock makes sure a block a verified certificate names gets here:
// from the tree of a peer if it is close, or as committed history if the
// gap is larger than a fetch can carry.
func (c *Core) needBlock(id ledger.BlockID, height uint64, from gm.KeyID) {
	if c.tree.get(id) != nil || c.fetching[id] {
		return
	}
	root := c.tree.root.header.Height
	if height <= root {
		return
	}
	if from == (gm.KeyID{}) || (c.self >= 0 && from == c.selfKey()) {
		from = c.pickPeer()
		if from == (gm.KeyID{}) {
			return
		}
	}
	if height-root > MaxFetchBlocks {
		c.requestSync(from)
		return
	}
	if len(c.fetching) >= maxFetching {
		return
	}
	c.fetching[id] = true
	c.metrics.FetchRequests++
	c.send(from, &Message{Version: Version, FetchRequest: &FetchRequest{
		Epoch: c.ep.Epoch(), BlockID: id, Count: uint32(height - root)}})
}

// onFetchRequest answers with the block asked for and its ancestors, from
// the tree or the recently committed blocks.
func (c *Core) onFetchRequest(from gm.KeyID, req *FetchRequest) {
	if !c.allow(from, false) {
		c.drop(DropOverload)
		return
	}
	var out []CertifiedBlock
	id := req.BlockID
	for len(out) < int(req.Count) {
		if n := c.tree.get(id); n != nil && n.block != nil && n.justify != nil {
			out = append(out, CertifiedBlock{Block: *n.block, Justify: *n.justify})
			id = n.header.PrevHash
			continue
		}
		if r := c.recentBlock(id); r != nil {
			out = append(out, CertifiedBlock{Block: *r.block, Justify: *r.justify})
			id = r.block.Header.PrevHash
			continue
		}
		break
	}
	for len(out) > 0 {
		m := &Message{Version: Version, FetchResponse: &FetchResponse{Blocks: out}}
		if enc, err := m.Encode(); err == nil {
			c.emit(Send{To: from, Kind: KindFetchResponse, Message: enc})
			return
		}
		out = out[:len(out)/2]
	}
}

func (c *Core) recentBlock(id ledger.BlockID) *recentBlock {
	for i := len(c.recent) - 1; i >= 0; i-- {
		if c.recent[i].id == id {
			return &c.recent[i]
		}
	}
	return nil
}

// onFetchResponse checks that the blocks chain from the one asked for
// back along parent links, each certified by the QC its child carries,
// then adds them oldest first.
func (c *Core) onFetchResponse(from gm.KeyID, resp *FetchResponse) {
	if len(resp.Blocks) == 0 {
		return
	}
	ids := make([]ledger.BlockID, len(resp.Blocks))
	ids[0] = resp.Blocks[0].Block.Header.ID()
	if !c.fetching[ids[0]] {
		c.drop(DropUnsolicited)
		return
	}
	delete(c.fetching, ids[0])
	for i := range resp.Blocks {
		cb := &resp.Blocks[i]
		h := &cb.Block.Header
		if i > 0 {
			ids[i] = h.ID()
			if ids[i] != resp.Blocks[i-1].Block.Header.PrevHash {
				c.drop(DropInvalid)
				return
			}
		}
		j := &cb.Justify.Data
		if h.ChainID != c.chainID || h.Epoch != c.ep.Epoch() || h.Round == 0 ||
			j.BlockID != h.PrevHash || j.Height+1 != h.Height || j.Round >= h.Round {
			c.drop(DropInvalid)
			return
		}
		if err := c.ep.VerifyQC(&cb.Justify); err != nil {
			c.dropErr(err)
			return
		}
	}
	for i := len(resp.Blocks) - 1; i >= 0; i-- {
		b := resp.Blocks[i].Block
		j := resp.Blocks[i].Justify
		c.insert(&b, ids[i], &j, nil, false, from)
	}
}

// requestSync asks a peer for committed blocks after this node's root.
func (c *Core) requestSync(from gm.KeyID) {
	if c.syncing || from == (gm.KeyID{}) || (c.self >= 0 && from == c.selfKey()) {
		return
	}
	c.syncing = true
	c.syncFrom = from
	c.metrics.SyncRequests++
	c.send(from, &Message{Version: Version, SyncRequest: &SyncRequest{
		Epoch: c.ep.Epoch(), FromHeight: c.tree.root.header.Height + 1, MaxBlocks: syncBatch}})
}

func (c *Core) onSyncRequest(from gm.KeyID, req *SyncRequest) {
	if req.FromHeight == 0 || req.FromHeight > c.tree.root.header.Height || req.Epoch > c.ep.Epoch() {
		return
	}
	if !c.allow(from, true) {
		c.drop(DropOverload)
		return
	}
	c.metrics.SyncServed++
	c.emit(ServeSync{To: from, Request: *req})
}

// onSyncResponse checks committed blocks from a peer — consecutive from
// this node's root, of its epoch, ending in a block a valid commit proof
// covers — and adds them to the tree, to be validated and then committed.
func (c *Core) onSyncResponse(from gm.KeyID, resp *SyncResponse) {
	if !c.syncing || from != c.syncFrom {
		c.drop(DropUnsolicited)
		return
	}
	c.syncing = false
	if len(resp.Blocks) == 0 {
		return
	}
	root := c.tree.root
	if resp.Blocks[0].Header.Height != root.header.Height+1 || resp.Blocks[0].Header.PrevHash != root.id {
		c.drop(DropStale)
		return
	}
	ids := make([]ledger.BlockID, len(resp.Blocks))
	for i := range resp.Blocks {
		h := &resp.Blocks[i].Header
		if h.ChainID != c.chainID || h.Epoch != c.ep.Epoch() || (i > 0 && h.PrevHash != ids[i-1]) {
			c.drop(DropInvalid)
			return
		}
		ids[i] = h.ID()
	}
	got, height, err := c.ep.VerifyCommitProof(resp.Proof)
	if err != nil {
		c.dropErr(err)
		return
	}
	if got != ids[len(ids)-1] || height != resp.Blocks[len(ids)-1].Header.Height {
		c.drop(DropInvalid)
		return
	}
	c.syncMore = len(resp.Blocks) >= syncBatch
	for i := range resp.Blocks {
		if c.tree.get(ids[i]) != nil || resp.Blocks[i].Header.Epoch != c.ep.Epoch() {
			continue
		}
		parent := c.tree.get(resp.Blocks[i].Header.PrevHash)
		if parent == nil || parent.round >= resp.Blocks[i].Header.Round {
			c.drop(DropInvalid)
			return
		}
		b := resp.Blocks[i]
		n := c.tree.add(parent, &b, ids[i], nil, nil)
		c.maybeValidate(n)
	}
	if len(resp.Proof.Links) == 0 {
		c.processQC(&resp.Proof.QC, from)
		return
	}
	c.noteCommit(got, height, *resp.Proof, from)
	c.tryCommit()
}

// CommittedReader reads committed blocks from storage, to answer peers'
// sync requests ([ServeSync]).
type CommittedReader interface {
	// CommittedHeight returns the height of the last committed block.
	CommittedHeight() (uint64, error)
	// CommittedBlock returns the committed block at height and the
	// commit proof stored beside it, if a commit ended with that block
	// (nil otherwise).
	CommittedBlock(height uint64) (*ledger.Block, *CommitProof, error)
}

// syncBudget bounds the body bytes one sync response carries (at least one
// commit's worth is sent whatever its size).
const syncBudget = 16 << 20

// BuildSyncResponse answers req from storage: committed blocks of the
// requester's epoch from req.FromHeight on, ending with a block that has a
// commit proof, within the request's count and a byte budget. It returns
// the encoded message, which carries no blocks when there is nothing to
// give.
func BuildSyncResponse(r CommittedReader, req SyncRequest) ([]byte, error) {
	top, err := r.CommittedHeight()
	if err != nil {
		return nil, fmt.Errorf("consensus: sync: committed height: %w", err)
	}
	want := int(min(req.MaxBlocks, MaxSyncBlocks))
	var (
		blocks []ledger.Block
		proof  *CommitProof
		good   int
		size   uint64
	)
	for h := req.FromHeight; req.FromHeight > 0 && h <= top && len(blocks) < MaxSyncBlocks; h++ {
		b, p, err := r.CommittedBlock(h)
		if err != nil {
			return nil, fmt.Errorf("consensus: sync: block %d: %w", h, err)
		}
		if b.Header.Epoch != req.Epoch || b.Header.Height != h {
			break
		}
		blocks = append(blocks, *b)
		size += b.Header.BodySize
		for i := range b.Txs {
			size += uint64(len(b.Txs[i].Payload))
		}
		if p != nil {
			good, proof = len(blocks), p
			if len(blocks) >= want || size >= syncBudget {
				break
			}
		}
	}
	resp := &SyncResponse{}
	if good > 0 {
		resp.Blocks, resp.Proof = blocks[:good], proof
	}
	for {
		enc, err := (&Message{Version: Version, SyncResponse: resp}).Encode()
		if err == nil || len(resp.Blocks) == 0 {
			return enc, err
		}
		// Too large for one message: send nothing rather than a
		// response the requester cannot verify.
		resp = &SyncResponse{}
	}
}
