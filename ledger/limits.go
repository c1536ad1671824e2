package ledger

// Format versions. A decoder refuses any other value.
const (
	TxVersion     = 1
	HeaderVersion = 1
)

// Size limits. Every decoder enforces them; docs/DATA-FORMAT.md lists them.
const (
	MaxChainIDLen     = 64
	MaxSigners        = 16        // signers (03_003) on one transaction
	MaxDataBytes      = 64 << 10  // entity data (04_003)
	MaxMemoBytes      = 1024      // entity memo (04_004), UTF-8
	MaxPayloadBytes   = 1 << 20   // a content-addressed payload
	MaxTxBytes        = 80 << 10  // an encoded transaction without its payload
	MaxBlockTxs       = 10_000    // transactions in one block (02_007)
	MaxBlockBodyBytes = 32 << 20  // an encoded block body
	MaxInstitutionLen = 256       // institution (01_004)
	MaxCertBytes      = 8 << 10   // a DER certificate (01_003)
	MaxVersionLen     = 64        // protocol and software version strings (06_001, 06_002)
	MaxPeerAddrLen    = 256       // peer address (06_004)
	MaxContractCode   = 256 << 10 // contract code (05_003)
)
