package bootctl

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"hallmark/gm"
	"hallmark/images"
)

func fw(version string, sv uint64) images.Firmware {
	return images.Firmware{
		Version:         version,
		SecurityVersion: sv,
		Hardware:        "hw",
		SlotSize:        4 << 20,
		SlotDigest:      gm.SM3([]byte(version)),
	}
}

func mustSelect(t *testing.T, st State) (Boot, State) {
	t.Helper()
	b, next, err := st.Select()
	if err != nil {
		t.Fatalf("Select: %v", err)
	}
	return b, next
}

func install(t *testing.T, st State, booted Slot, f images.Firmware) (Slot, State) {
	t.Helper()
	target, st, err := st.PrepareInstall(booted)
	if err != nil {
		t.Fatalf("PrepareInstall: %v", err)
	}
	if st.Record(target).State != Empty {
		t.Fatalf("prepared slot is %s, want empty", st.Record(target).State)
	}
	st, err = st.FinishInstall(target, f, 1)
	if err != nil {
		t.Fatalf("FinishInstall: %v", err)
	}
	return target, st
}

func TestUpdateCommits(t *testing.T) {
	st := Initial("hw", fw("1", 1))
	b, st := mustSelect(t, st)
	if b.Slot != SlotA || b.Trial {
		t.Fatalf("first boot %+v, want committed A", b)
	}
	target, st := install(t, st, SlotA, fw("2", 2))
	if target != SlotB {
		t.Fatalf("update went to %s, want B", target)
	}
	b, st = mustSelect(t, st)
	if b.Slot != SlotB || !b.Trial || st.TriesLeft != 0 {
		t.Fatalf("boot after update %+v tries %d, want trial of B with its try spent", b, st.TriesLeft)
	}
	if _, _, err := st.PrepareInstall(SlotB); !errors.Is(err, ErrInTrial) {
		t.Fatalf("update from an uncommitted trial = %v, want ErrInTrial", err)
	}
	st, changed, err := st.Commit(SlotB)
	if err != nil || !changed {
		t.Fatalf("Commit = %v changed %v", err, changed)
	}
	if st.Active != SlotB || st.B.State != Good || st.Trial != SlotNone {
		t.Fatalf("after commit %+v", st)
	}
	b, st = mustSelect(t, st)
	if b.Slot != SlotB || b.Trial {
		t.Fatalf("boot after commit %+v", b)
	}
	if _, changed, err := st.Commit(SlotB); err != nil || changed {
		t.Fatalf("second Commit = %v changed %v, want no-op", err, changed)
	}
	// The next update goes back to A.
	target, _ = install(t, st, SlotB, fw("3", 3))
	if target != SlotA {
		t.Fatalf("second update went to %s, want A", target)
	}
}

func TestFailedTrialFallsBack(t *testing.T) {
	st := Initial("hw", fw("1", 1))
	_, st = install(t, st, SlotA, fw("2-broken", 2))
	b, st := mustSelect(t, st)
	if b.Slot != SlotB || !b.Trial {
		t.Fatalf("trial boot %+v", b)
	}
	// The trial never commits; the machine reboots.
	b, st = mustSelect(t, st)
	if b.Slot != SlotA || b.Trial || b.FellBack != SlotB {
		t.Fatalf("boot after failed trial %+v, want fallback to A", b)
	}
	if st.B.State != Bad || st.Trial != SlotNone || st.Active != SlotA {
		t.Fatalf("state after fallback %+v", st)
	}
	if _, _, err := st.Commit(SlotB); !errors.Is(err, ErrNotBootable) {
		t.Fatalf("late commit of the abandoned slot = %v, want ErrNotBootable", err)
	}
	// A later update may reuse the bad slot.
	target, st := install(t, st, SlotA, fw("2.1", 2))
	if target != SlotB || st.B.State != Trial {
		t.Fatalf("retry update to %s state %s", target, st.B.State)
	}
}

func TestInterruptedInstallIsNotBootable(t *testing.T) {
	st := Initial("hw", fw("1", 1))
	_, st, err := st.PrepareInstall(SlotA)
	if err != nil {
		t.Fatal(err)
	}
	// Power is lost while slot B is written: only PrepareInstall's state
	// reached the disk.
	b, _ := mustSelect(t, st)
	if b.Slot != SlotA || b.Trial {
		t.Fatalf("boot after interrupted install %+v", b)
	}
	if _, err := st.FinishInstall(SlotA, fw("x", 1), 1); err == nil {
		t.Fatal("FinishInstall into the active slot accepted")
	}
}

func TestValidateRejects(t *testing.T) {
	base := Initial("hw", fw("1", 1))
	for name, mutate := range map[string]func(*State){
		"version":         func(s *State) { s.Version = 9 },
		"no hardware":     func(s *State) { s.Hardware = "" },
		"no active":       func(s *State) { s.Active = SlotNone },
		"trial is active": func(s *State) { s.Trial = SlotA },
		"trial not trial": func(s *State) { s.Trial = SlotB },
		"stray trial":     func(s *State) { s.B = SlotRecord{State: Trial, Firmware: fw("2", 2)} },
		"good w/o fw":     func(s *State) { s.B = SlotRecord{State: Good} },
	} {
		st := base
		mutate(&st)
		if err := st.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
}

func TestStoreSurvivesTornWrite(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "bootctl"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const base = 4096 // the partition need not start at 0
	if err := f.Truncate(base + PartitionSize); err != nil {
		t.Fatal(err)
	}
	s := NewStore(f, base)
	if _, err := s.Load(); !errors.Is(err, ErrNoState) {
		t.Fatalf("Load of a blank partition = %v, want ErrNoState", err)
	}
	st := Initial("hw", fw("1", 1))
	first, err := EncodeCopy(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(first, base+copySize); err != nil { // Seq 1 lives in copy 1
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil || got.Seq != 1 || got.Active != SlotA {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	_, next, _ := got.Select()
	target, next, _ := next.PrepareInstall(SlotA)
	saved, err := s.Save(got, next)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Seq != 2 {
		t.Fatalf("saved seq %d", saved.Seq)
	}
	fin, err := saved.FinishInstall(target, fw("2", 2), 1)
	if err != nil {
		t.Fatal(err)
	}
	// Tear the next write: it goes to copy 1 (seq 3); corrupt it as a
	// power cut would.
	if _, err := s.Save(saved, fin); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage"), base+copySize+40); err != nil {
		t.Fatal(err)
	}
	got, err = s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 2 || got.B.State != Empty {
		t.Fatalf("after torn write Load = seq %d B %s, want the previous state (seq 2, B empty)", got.Seq, got.B.State)
	}

	// Manifests round-trip and are independent per slot.
	if err := s.WriteManifest(SlotB, []byte("manifest-b")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.ReadManifest(SlotB); err != nil || string(m) != "manifest-b" {
		t.Fatalf("ReadManifest(B) = %q, %v", m, err)
	}
	if m, err := s.ReadManifest(SlotA); err != nil || m != nil {
		t.Fatalf("ReadManifest(A) = %q, %v, want none", m, err)
	}
}

func FuzzDecodeState(f *testing.F) {
	good, err := EncodeCopy(Initial("hw", fw("1", 1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(make([]byte, copySize), good...))
	f.Add(make([]byte, 2*copySize))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := DecodeState(data)
		if err != nil {
			return
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("DecodeState returned an invalid state: %v", err)
		}
	})
}
