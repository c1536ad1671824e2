package hsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"hallmark/gm"
	"hallmark/hsm/devkeys"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
)

// File formats of key files other than the dev keystore's (package
// devkeys). Each starts with its format string, so a file of one kind is
// never read as another.
const (
	formatTPMBlob = "hallmark/tpm-key-blob/v1"
	formatSealed  = "hallmark/tpm-sealed-key/v1"
	maxKeyFile    = 8 << 10
)

// tpmBlobFile is an SM2 key wrapped by the TPM (tpm:blob=...).
type tpmBlobFile struct {
	Format    string                `cbor:"1,keyasint"`
	PublicKey ledger.PublicKeyBytes `cbor:"2,keyasint"`
	Public    []byte                `cbor:"3,keyasint"` // TPMT_PUBLIC
	Private   []byte                `cbor:"4,keyasint"` // TPM2B_PRIVATE contents
}

// sealedFile is a software SM2 scalar sealed to PCRs (tpm-sealed:...).
type sealedFile struct {
	Format    string                `cbor:"1,keyasint"`
	PublicKey ledger.PublicKeyBytes `cbor:"2,keyasint"`
	PCRs      []uint                `cbor:"3,keyasint"` // SHA-256 bank
	Policy    []byte                `cbor:"4,keyasint"` // PolicyPCR digest
	Public    []byte                `cbor:"5,keyasint"`
	Private   []byte                `cbor:"6,keyasint"`
}

func (f *sealedFile) blob() *tpm.SealedBlob {
	return &tpm.SealedBlob{Public: f.Public, Private: f.Private, PCRs: f.PCRs, Policy: f.Policy}
}

// readKeyFile reads a key file of bounded size; a missing file is
// ErrKeyNotFound.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no key file %s", ErrKeyNotFound, path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s: key file larger than %d bytes", path, maxKeyFile)
	}
	return b, nil
}

// fileKind identifies a key file by its format string.
func fileKind(data []byte) (Kind, *gm.PublicKey, error) {
	if f, err := devkeys.Parse(data); err == nil {
		pub, err := f.Public()
		return KindDev, pub, err
	}
	var blob tpmBlobFile
	if err := ledger.Unmarshal(data, &blob); err == nil && blob.Format == formatTPMBlob {
		pub, err := blob.PublicKey.Parse()
		return KindTPM, pub, err
	}
	var sealed sealedFile
	if err := ledger.Unmarshal(data, &sealed); err == nil && sealed.Format == formatSealed {
		pub, err := sealed.PublicKey.Parse()
		return KindTPMSealed, pub, err
	}
	return "", nil, errors.New("not a Hallmark key file")
}

func parseBlobFile(path string, data []byte) (*tpmBlobFile, *gm.PublicKey, error) {
	var f tpmBlobFile
	if err := ledger.Unmarshal(data, &f); err != nil || f.Format != formatTPMBlob {
		return nil, nil, fmt.Errorf("%s is not a TPM key blob file (%s)", path, describeFile(data))
	}
	pub, err := f.PublicKey.Parse()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, pub, nil
}

func parseSealedFile(path string, data []byte) (*sealedFile, *gm.PublicKey, error) {
	var f sealedFile
	if err := ledger.Unmarshal(data, &f); err != nil || f.Format != formatSealed {
		return nil, nil, fmt.Errorf("%s is not a sealed key file (%s)", path, describeFile(data))
	}
	pub, err := f.PublicKey.Parse()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, pub, nil
}

func describeFile(data []byte) string {
	kind, _, err := fileKind(data)
	if err != nil {
		return err.Error()
	}
	return "it holds a " + string(kind) + " key"
}

// writeNewFile writes data to path atomically and refuses to replace an
// existing file: it writes a temporary file, syncs it, and moves it into
// place with a rename that fails if path exists (or, on filesystems
// without that rename, a hard link, which fails likewise), then syncs the
// directory. The rename works on FAT, where an appliance's data partition
// may keep its key files and hard links do not exist.
func writeNewFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		err = os.Link(tmp, path)
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrKeyExists, path)
		}
		return fmt.Errorf("moving the new file into place: %w", err)
	}
	// Sync the file again after the rename: FAT keeps a file's size and
	// first cluster in its directory entry, and a rename writes the new
	// entry empty until the file's inode is written back. Without this, a
	// power cut after the rename leaves an empty key file.
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// removeKeyFile deletes a key file and syncs its directory.
func removeKeyFile(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: no key file %s", ErrKeyNotFound, path)
		}
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
