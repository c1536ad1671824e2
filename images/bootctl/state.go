// Package bootctl is the A/B boot control of a Hallmark appliance: which
// root slot to boot, which slot is on trial after an update, and what each
// slot holds. The state machine is pure; [Store] keeps the state on the
// boot control partition in two checksummed copies so that a write torn by
// a power cut never loses the last good state.
//
// Three parties move the state:
//   - the installer (flash, update) prepares the inactive slot, writes it,
//     and marks it to be tried once ([State.PrepareInstall],
//     [State.FinishInstall]);
//   - the bootloader picks the slot to boot and spends the trial's try
//     before booting it ([State.Select]);
//   - the booted firmware commits its slot after the node came up healthy
//     ([State.Commit]).
//
// A trial slot that never commits is marked bad on the next boot and the
// bootloader boots the committed slot again.
package bootctl

import (
	"errors"
	"fmt"

	"hallmark/images"
)

// StateVersion is the boot control format version.
const StateVersion = 1

// Slot names a root slot.
type Slot uint8

// Slots. SlotNone means "no slot".
const (
	SlotNone Slot = 0
	SlotA    Slot = 1
	SlotB    Slot = 2
)

// String returns "A", "B" or "none".
func (s Slot) String() string {
	switch s {
	case SlotA:
		return "A"
	case SlotB:
		return "B"
	case SlotNone:
		return "none"
	}
	return fmt.Sprintf("slot(%d)", uint8(s))
}

// Valid reports whether s is A or B.
func (s Slot) Valid() bool { return s == SlotA || s == SlotB }

// Other returns the other slot of A and B.
func (s Slot) Other() Slot {
	switch s {
	case SlotA:
		return SlotB
	case SlotB:
		return SlotA
	}
	return SlotNone
}

// PartName returns the GPT partition name of the slot.
func (s Slot) PartName() string {
	switch s {
	case SlotA:
		return images.PartSlotA
	case SlotB:
		return images.PartSlotB
	}
	return ""
}

// ParseSlot parses "A" or "B" (either case).
func ParseSlot(s string) (Slot, error) {
	switch s {
	case "A", "a":
		return SlotA, nil
	case "B", "b":
		return SlotB, nil
	}
	return SlotNone, fmt.Errorf("bootctl: %q is not a slot (want A or B)", s)
}

// SlotState is what a slot holds.
type SlotState uint8

// Slot states.
const (
	// Empty: nothing bootable (never written, or being written).
	Empty SlotState = 0
	// Trial: a verified release waiting for, or in, its one trial boot.
	Trial SlotState = 1
	// Good: committed after a healthy boot.
	Good SlotState = 2
	// Bad: its trial boot did not commit.
	Bad SlotState = 3
)

func (s SlotState) String() string {
	switch s {
	case Empty:
		return "empty"
	case Trial:
		return "trial"
	case Good:
		return "good"
	case Bad:
		return "bad"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// SlotRecord describes one slot.
type SlotRecord struct {
	State SlotState `cbor:"1,keyasint" json:"state"`
	// Firmware is the release the slot holds; zero when Empty.
	Firmware images.Firmware `cbor:"2,keyasint" json:"firmware"`
}

// State is the boot control state.
type State struct {
	Version uint8 `cbor:"1,keyasint" json:"version"`
	// Seq increases by one with every write; the copy with the higher Seq
	// wins.
	Seq uint64 `cbor:"2,keyasint" json:"seq"`
	// Hardware is the device's hardware id, fixed when it was flashed.
	Hardware string `cbor:"3,keyasint" json:"hardware"`
	// Active is the committed slot: the one that booted healthy last.
	Active Slot `cbor:"4,keyasint" json:"active"`
	// Trial is the slot to try, SlotNone when no update is pending.
	Trial Slot `cbor:"5,keyasint" json:"trial"`
	// TriesLeft is how many more times the bootloader may boot Trial.
	TriesLeft uint8      `cbor:"6,keyasint" json:"triesLeft"`
	A         SlotRecord `cbor:"7,keyasint" json:"a"`
	B         SlotRecord `cbor:"8,keyasint" json:"b"`
}

// Errors of the state machine.
var (
	ErrInvalid     = errors.New("bootctl: invalid boot control state")
	ErrNoBootable  = errors.New("bootctl: no bootable slot")
	ErrInTrial     = errors.New("bootctl: the booted slot is on trial")
	ErrNotBootable = errors.New("bootctl: slot is not bootable")
)

// Initial returns the state of a freshly built image: slot A holds fw and
// is committed, slot B is empty.
func Initial(hardware string, fw images.Firmware) State {
	return State{
		Version:  StateVersion,
		Seq:      1,
		Hardware: hardware,
		Active:   SlotA,
		A:        SlotRecord{State: Good, Firmware: fw},
	}
}

// Record returns a pointer to the record of slot s (A or B).
func (st *State) Record(s Slot) *SlotRecord {
	if s == SlotB {
		return &st.B
	}
	return &st.A
}

// Validate checks the state's invariants.
func (st *State) Validate() error {
	if st.Version != StateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrInvalid, st.Version, StateVersion)
	}
	if st.Hardware == "" || len(st.Hardware) > images.MaxHardwareLen {
		return fmt.Errorf("%w: hardware id %q", ErrInvalid, st.Hardware)
	}
	if !st.Active.Valid() {
		return fmt.Errorf("%w: active slot %s", ErrInvalid, st.Active)
	}
	if st.Trial != SlotNone {
		if st.Trial != st.Active.Other() {
			return fmt.Errorf("%w: trial slot %s with active %s", ErrInvalid, st.Trial, st.Active)
		}
		if st.Record(st.Trial).State != Trial {
			return fmt.Errorf("%w: trial slot %s is %s", ErrInvalid, st.Trial, st.Record(st.Trial).State)
		}
	}
	for _, s := range []Slot{SlotA, SlotB} {
		r := st.Record(s)
		if r.State > Bad {
			return fmt.Errorf("%w: slot %s state %d", ErrInvalid, s, r.State)
		}
		if r.State == Trial && st.Trial != s {
			return fmt.Errorf("%w: slot %s is on trial but not the trial slot", ErrInvalid, s)
		}
		if r.State != Empty && r.Firmware.SlotSize == 0 {
			return fmt.Errorf("%w: slot %s is %s without firmware", ErrInvalid, s, r.State)
		}
	}
	return nil
}

// Boot is the bootloader's decision.
type Boot struct {
	Slot Slot
	// Trial is true when Slot is being tried after an update: it must
	// commit during this boot or it is abandoned.
	Trial bool
	// FellBack names the trial slot abandoned by this decision, if any.
	FellBack Slot
}

// Select is the bootloader's step. It returns the slot to boot and the
// state to persist BEFORE booting it: booting a trial slot spends its try,
// and a trial slot with no tries left is marked bad and the committed slot
// booted instead.
func (st State) Select() (Boot, State, error) {
	if err := st.Validate(); err != nil {
		return Boot{}, st, err
	}
	next := st
	var b Boot
	if st.Trial != SlotNone {
		if st.TriesLeft > 0 {
			next.TriesLeft--
			return Boot{Slot: st.Trial, Trial: true}, next, nil
		}
		next.Record(st.Trial).State = Bad
		b.FellBack = st.Trial
		next.Trial = SlotNone
	}
	if next.Record(next.Active).State != Good {
		return b, next, fmt.Errorf("%w: active slot %s is %s", ErrNoBootable, next.Active, next.Record(next.Active).State)
	}
	b.Slot = next.Active
	return b, next, nil
}

// PrepareInstall chooses the slot an update goes to, the slot the system
// did not boot from, and marks it Empty so that nothing boots it while it
// is being written. booted is the running slot; an offline installer
// passes the active slot. Updating from a slot still on trial is refused:
// the update would overwrite the only committed slot.
func (st State) PrepareInstall(booted Slot) (Slot, State, error) {
	if err := st.Validate(); err != nil {
		return SlotNone, st, err
	}
	if booted != st.Active {
		if booted == st.Trial {
			return SlotNone, st, fmt.Errorf("%w: slot %s has not committed yet; wait for it or reboot", ErrInTrial, booted)
		}
		return SlotNone, st, fmt.Errorf("%w: booted slot %s is not the active slot %s", ErrInvalid, booted, st.Active)
	}
	target := booted.Other()
	next := st
	*next.Record(target) = SlotRecord{State: Empty}
	if next.Trial == target {
		next.Trial = SlotNone
		next.TriesLeft = 0
	}
	return target, next, nil
}

// FinishInstall records that target now holds fw, verified, and is to be
// tried tries times (normally once).
func (st State) FinishInstall(target Slot, fw images.Firmware, tries uint8) (State, error) {
	if !target.Valid() || target != st.Active.Other() {
		return st, fmt.Errorf("%w: install target %s with active %s", ErrInvalid, target, st.Active)
	}
	if st.Record(target).State != Empty {
		return st, fmt.Errorf("%w: install target %s is %s, not prepared", ErrInvalid, target, st.Record(target).State)
	}
	if tries == 0 {
		return st, fmt.Errorf("%w: zero tries", ErrInvalid)
	}
	next := st
	*next.Record(target) = SlotRecord{State: Trial, Firmware: fw}
	next.Trial = target
	next.TriesLeft = tries
	return next, next.Validate()
}

// Commit is the booted firmware's step after the node came up healthy. A
// trial slot becomes the active, good slot; committing the active slot
// changes nothing (changed is false).
func (st State) Commit(booted Slot) (next State, changed bool, err error) {
	if err := st.Validate(); err != nil {
		return st, false, err
	}
	switch {
	case booted == st.Active && st.Record(booted).State == Good:
		return st, false, nil
	case booted == st.Trial && st.Trial != SlotNone:
		next = st
		next.Active = booted
		next.Record(booted).State = Good
		next.Trial = SlotNone
		next.TriesLeft = 0
		return next, true, next.Validate()
	}
	return st, false, fmt.Errorf("%w: booted slot %s is %s and neither active nor on trial", ErrNotBootable, booted, st.Record(booted).State)
}

// IsTrial reports whether booting s now is a trial boot: s is the trial
// slot. The bootloader has already spent the try, so TriesLeft may be 0.
func (st State) IsTrial(s Slot) bool { return st.Trial != SlotNone && st.Trial == s }
