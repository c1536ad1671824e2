package txs

import "hallmark/ledger"

// AssetIssue (asset.issue) creates an asset class (账本应用: publish new
// on-chain content), e.g. a series of e-bills. The initial supply is
// credited to the issuer. Only an account with the issuer role may send
// it; the sender becomes the asset's issuer.
type AssetIssue struct {
	Symbol   string `cbor:"1,keyasint" json:"symbol"`
	Name     string `cbor:"2,keyasint" json:"name"`
	Decimals uint8  `cbor:"3,keyasint,omitempty" json:"decimals"`
	// MaxSupply caps the supply; zero means no cap below 2^64-1.
	MaxSupply uint64 `cbor:"4,keyasint,omitempty" json:"maxSupply,omitempty"`
	Initial   uint64 `cbor:"5,keyasint,omitempty" json:"initialSupply,omitempty"`
}

// TxType implements Body.
func (*AssetIssue) TxType() ledger.TxType { return ledger.TxAssetIssue }

// Text implements Body.
func (b *AssetIssue) Text() []string { return []string{b.Symbol, b.Name} }

// Validate implements Body.
func (b *AssetIssue) Validate() error {
	if !ValidSymbol(b.Symbol) {
		return bad("asset symbol %q: want 1 to %d bytes of [A-Z0-9._-]", b.Symbol, MaxSymbolLen)
	}
	if err := checkText("asset name", b.Name, 1, MaxNameLen); err != nil {
		return err
	}
	if b.Decimals > MaxDecimals {
		return bad("%d decimals exceed %d", b.Decimals, MaxDecimals)
	}
	if b.MaxSupply != 0 && b.Initial > b.MaxSupply {
		return bad("initial supply %d exceeds the maximum %d", b.Initial, b.MaxSupply)
	}
	return nil
}

// AssetAmount is the body shared by mint, allocate and transfer: an asset
// and a positive amount in its smallest unit.
type AssetAmount struct {
	Symbol string `cbor:"1,keyasint" json:"symbol"`
	Amount uint64 `cbor:"2,keyasint" json:"amount"`
}

func (b *AssetAmount) validate() error {
	if !ValidSymbol(b.Symbol) {
		return bad("asset symbol %q: want 1 to %d bytes of [A-Z0-9._-]", b.Symbol, MaxSymbolLen)
	}
	if b.Amount == 0 {
		return bad("amount must be positive")
	}
	return nil
}

// AssetMint (asset.mint) increases an asset's supply (增加已有链上内容数量),
// crediting the issuer. Only the asset's issuer may send it.
type AssetMint AssetAmount

// TxType implements Body.
func (*AssetMint) TxType() ledger.TxType { return ledger.TxAssetMint }

// Text implements Body.
func (*AssetMint) Text() []string { return nil }

// Validate implements Body.
func (b *AssetMint) Validate() error { return (*AssetAmount)(b).validate() }

// AssetAllocate (asset.allocate) moves units from the issuer's balance to
// the recipient (给指定用户分配). Only the asset's issuer may send it.
type AssetAllocate AssetAmount

// TxType implements Body.
func (*AssetAllocate) TxType() ledger.TxType { return ledger.TxAssetAllocate }

// Text implements Body.
func (*AssetAllocate) Text() []string { return nil }

// Validate implements Body.
func (b *AssetAllocate) Validate() error { return (*AssetAmount)(b).validate() }

// AssetTransfer (asset.transfer) moves units from the sender's balance to
// the recipient (在不同用户之间交换).
type AssetTransfer AssetAmount

// TxType implements Body.
func (*AssetTransfer) TxType() ledger.TxType { return ledger.TxAssetTransfer }

// Text implements Body.
func (*AssetTransfer) Text() []string { return nil }

// Validate implements Body.
func (b *AssetTransfer) Validate() error { return (*AssetAmount)(b).validate() }
