package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Frames on a stream are a 4-byte big-endian length followed by that many
// bytes. A length above the receiver's limit is a protocol violation.

// ErrFrameTooLarge is returned for a frame whose declared length exceeds
// the limit.
var ErrFrameTooLarge = errors.New("peer: frame exceeds the maximum message size")

func writeFrame(w io.Writer, payload []byte) error {
	buf := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[4:], payload)
	_, err := w.Write(buf)
	return err
}

// readFrame reads one frame of at most max bytes. io.EOF means the stream
// ended cleanly between frames.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d > %d", ErrFrameTooLarge, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// sendQueue is a per-peer FIFO bounded in messages and bytes. When full,
// new messages are refused: the caller (consensus) tolerates loss and
// retransmits by its own timers, and one slow peer cannot exhaust memory.
type sendQueue struct {
	mu       sync.Mutex
	items    [][]byte
	bytes    int
	maxItems int
	maxBytes int
	ready    chan struct{} // signalled when an item is added
	closed   bool
}

func newSendQueue(maxItems, maxBytes int) *sendQueue {
	return &sendQueue{maxItems: maxItems, maxBytes: maxBytes, ready: make(chan struct{}, 1)}
}

func (q *sendQueue) push(msg []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.items) >= q.maxItems || q.bytes+len(msg) > q.maxBytes {
		return false
	}
	q.items = append(q.items, msg)
	q.bytes += len(msg)
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// pop returns the oldest message, or nil if the queue is empty.
func (q *sendQueue) pop() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	m := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	q.bytes -= len(m)
	return m
}

func (q *sendQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.bytes = 0
	q.mu.Unlock()
}

func (q *sendQueue) len() (items, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.bytes
}
