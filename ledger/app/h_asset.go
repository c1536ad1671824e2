package app

import (
	"math"

	"hallmark/ledger/reason"
	"hallmark/ledger/txs"
)

// Asset invariants: an asset's supply equals the sum of its balances;
// balances never go negative and sums never overflow (a balance never
// exceeds the supply, which is checked against overflow and the cap).

func applyAssetIssue(o *op) error {
	b := o.body.(*txs.AssetIssue)
	existing, err := o.st.Get(assetKey(b.Symbol))
	if err != nil {
		return err
	}
	if existing != nil {
		return reason.Errorf(reason.AssetExists, "asset %s", b.Symbol)
	}
	a := &Asset{
		Symbol: b.Symbol, Name: b.Name, Issuer: o.sender.Address, Decimals: b.Decimals,
		MaxSupply: b.MaxSupply, Supply: b.Initial, Height: o.env.height,
	}
	if err := putObj(o.st, assetKey(a.Symbol), a); err != nil {
		return err
	}
	setBalance(o.st, a.Symbol, a.Issuer, b.Initial)
	return nil
}

// issuedAsset loads an asset and checks that the sender issued it.
func issuedAsset(o *op, symbol string) (*Asset, error) {
	a, err := getObj[Asset](o.st, assetKey(symbol))
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, reason.Errorf(reason.AssetNotFound, "asset %s", symbol)
	}
	if a.Issuer != o.sender.Address {
		return nil, reason.Errorf(reason.NotAssetIssuer, "asset %s has another issuer", symbol)
	}
	return a, nil
}

func applyAssetMint(o *op) error {
	b := o.body.(*txs.AssetMint)
	a, err := issuedAsset(o, b.Symbol)
	if err != nil {
		return err
	}
	limit := uint64(math.MaxUint64)
	if a.MaxSupply != 0 {
		limit = a.MaxSupply
	}
	if a.Supply > limit || b.Amount > limit-a.Supply {
		return reason.Errorf(reason.SupplyExceeded, "supply %d + %d exceeds %d", a.Supply, b.Amount, limit)
	}
	bal, err := getBalance(o.st, a.Symbol, a.Issuer)
	if err != nil {
		return err
	}
	a.Supply += b.Amount
	if err := putObj(o.st, assetKey(a.Symbol), a); err != nil {
		return err
	}
	setBalance(o.st, a.Symbol, a.Issuer, bal+b.Amount) // bal <= old supply, so no overflow
	return nil
}

func applyAssetAllocate(o *op) error {
	b := o.body.(*txs.AssetAllocate)
	if _, err := issuedAsset(o, b.Symbol); err != nil {
		return err
	}
	return move(o, b.Symbol, b.Amount)
}

func applyAssetTransfer(o *op) error {
	b := o.body.(*txs.AssetTransfer)
	existing, err := o.st.Get(assetKey(b.Symbol))
	if err != nil {
		return err
	}
	if existing == nil {
		return reason.Errorf(reason.AssetNotFound, "asset %s", b.Symbol)
	}
	return move(o, b.Symbol, b.Amount)
}

// move transfers amount of symbol from the sender to the recipient.
func move(o *op, symbol string, amount uint64) error {
	to := *o.recipient
	if to == o.sender.Address {
		return reason.New(reason.SelfAction, "sender and recipient are the same account")
	}
	acct, err := getAccount(o.st, to)
	if err != nil {
		return err
	}
	if acct == nil {
		return reason.Errorf(reason.RecipientUnknown, "recipient %s", to)
	}
	if acct.Frozen {
		return reason.Errorf(reason.RecipientFrozen, "recipient %s", to)
	}
	from, err := getBalance(o.st, symbol, o.sender.Address)
	if err != nil {
		return err
	}
	if from < amount {
		return reason.Errorf(reason.InsufficientBalance, "balance %d, amount %d", from, amount)
	}
	dest, err := getBalance(o.st, symbol, to)
	if err != nil {
		return err
	}
	if dest > math.MaxUint64-amount {
		// Cannot happen while supply = sum of balances; refuse rather
		// than wrap if state was ever inconsistent.
		return reason.Errorf(reason.SupplyExceeded, "recipient balance would overflow")
	}
	setBalance(o.st, symbol, o.sender.Address, from-amount)
	setBalance(o.st, symbol, to, dest+amount)
	o.target = &to
	return nil
}
