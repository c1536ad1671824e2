package main

// Ratio declares one figure the report prints: how fast one benchmark is
// relative to another, measured in the same run.
//
// The value is speed(Num) / speed(Den), where speed is MB/s when both
// benchmarks report it (b.SetBytes) and operations per second (1e9 / ns/op)
// otherwise. A b.RunParallel benchmark's ns/op is wall time per operation
// across all goroutines, so its speed is the whole machine's.
//
// Num and Den name benchmarks as "<package>.<Name>" without the "Benchmark"
// prefix: "gm.SM2Verify" matches BenchmarkSM2Verify in any package whose
// import path ends in "/gm" (the full path, "hallmark/gm.SM2Verify", works
// too, and a bare "SM2Verify" works while only one package has it). A ratio whose benchmarks did not run (package filter, -bench
// regexp) is left out; one with only one side measured prints "n/a".
type Ratio struct {
	Name   string  // what the report calls it
	Num    string  // numerator benchmark
	Den    string  // denominator benchmark
	Target float64 // 0 for none
	// HigherIsBetter says which way Target points: true means the value
	// should be at least Target, false at most Target.
	HigherIsBetter bool
}

// ratios is the table the report prints, one line per ratio. Package owners
// add their own lines here, grouped under a comment naming the package.
var ratios = []Ratio{
	// --- gm: national cryptography against the stdlib and tjfoc/gmsm ---
	{"sm2_verify/p256_verify", "gm.SM2Verify", "gm.ECDSAP256Verify", 0.9, true},
	{"sm2_verify/p256_verify (all cores)", "gm.SM2VerifyParallel", "gm.ECDSAP256VerifyParallel", 0.9, true},
	{"sm2_verify all cores/one core", "gm.SM2VerifyParallel", "gm.SM2Verify", 0, true},
	{"sm2_sign/p256_sign", "gm.SM2Sign", "gm.ECDSAP256Sign", 0, true},
	{"emmansun/tjfoc verify", "gm.SM2Verify", "gm.TjfocSM2Verify", 0, true},
	{"emmansun/tjfoc sign", "gm.SM2Sign", "gm.TjfocSM2Sign", 0, true},
	{"sm3/sha256 (1 KiB)", "gm.SM3_1KiB", "gm.SHA256_1KiB", 0, true},
	{"sm4gcm/aes128gcm (16 KiB)", "gm.SM4GCM_16KiB", "gm.AESGCM_16KiB", 0, true},

	// --- node hot paths (feat/perf): what remembering and reusing saves ---
	{"tx id remembered/computed", "ledger.TxID/remembered", "ledger.TxID/computed", 0, true},
	{"tx validate signers remembered/parsed", "ledger.TxValidate/remembered", "ledger.TxValidate/parsed", 0, true},
	{"commit block 1000 tx prepared/full", "storage.CommitBlockPrepared/1000tx", "storage.CommitBlock/1000tx", 0, true},

	// --- storage group commit (feat/perf2): 4 blocks of 1,000 record.puts on a 200k-tx store ---
	{"commit records group2/single", "storage.CommitRecords/group2", "storage.CommitRecords/single", 0, true},
	{"commit records group4/single", "storage.CommitRecords/group4", "storage.CommitRecords/single", 0, true},
}
