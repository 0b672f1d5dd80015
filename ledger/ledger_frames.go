package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"strings"

	"github.com/pallarel/pallarel/storage"
)

// A commit of row results is stored as one frame: a fixed header, the
// commit's index (row → where its file is, how it ended, why it failed),
// then the row files (blobs). Local storage appends frames to segments;
// a store that cannot append (S3) holds one frame per object. Redis only
// says which commits were recorded (ledger.go), so the index of every row
// lives here, beside the bytes it describes.
//
//	header  "PLF1" | gen [8] | commit id u32 | index len u32 | data len u32 | crc32 u32 | 0 u32
//	index   per numbered row: row uvarint, status byte, kind byte, then
//	        kind blob: offset uvarint (into data), size uvarint;
//	        kind solo: name (uvarint length, bytes);
//	        and for a failed row its error (uvarint length, bytes)
//	data    the blobs (writeBlob: name, then file)
//
// The crc covers the header's first 24 bytes and the index, so a torn tail
// is never read as a commit.
const (
	frameMagic  = "PLF1"
	frameHeader = 32
	genBytes    = 8

	entryNone = 0 // no file: a failed row, or a done row without one
	entryBlob = 1 // the file is a blob in the frame's data
	entrySolo = 2 // the file is an object of its own under rows/<token>/

	// maxIndexBytes bounds an index read back, so a corrupt length is
	// caught before it allocates.
	maxIndexBytes = 64 << 20
)

// frameEntry is one numbered row of a commit's index.
type frameEntry struct {
	row    int
	failed bool
	kind   byte
	off    int64 // entryBlob: offset in the frame's data
	size   int64
	name   string // entrySolo: the object's name under rows/<token>/
	err    string // failed: why
}

// frameHead is a decoded frame header.
type frameHead struct {
	gen      string // hex, as Redis keeps it
	id       uint32
	indexLen int64
	dataLen  int64
}

func (h frameHead) size() int64 { return frameHeader + h.indexLen + h.dataLen }

// dataStart is where the frame's data starts, from the frame's start.
func (h frameHead) dataStart() int64 { return frameHeader + h.indexLen }

// encodeFrame builds one frame. gen is the ledger generation in hex.
func encodeFrame(gen string, id uint32, entries []frameEntry, data []byte) ([]byte, error) {
	g, err := decodeGen(gen)
	if err != nil {
		return nil, err
	}
	var idx []byte
	for _, e := range entries {
		idx = binary.AppendUvarint(idx, uint64(e.row))
		st := byte(slotDone)
		if e.failed {
			st = slotFailed
		}
		idx = append(idx, st, e.kind)
		switch e.kind {
		case entryBlob:
			idx = binary.AppendUvarint(idx, uint64(e.off))
			idx = binary.AppendUvarint(idx, uint64(e.size))
		case entrySolo:
			idx = appendString(idx, e.name)
		}
		if e.failed {
			idx = appendString(idx, e.err)
		}
	}
	out := make([]byte, frameHeader, frameHeader+len(idx)+len(data))
	copy(out, frameMagic)
	copy(out[4:12], g[:])
	binary.BigEndian.PutUint32(out[12:16], id)
	binary.BigEndian.PutUint32(out[16:20], uint32(len(idx)))
	binary.BigEndian.PutUint32(out[20:24], uint32(len(data)))
	crc := crc32.NewIEEE()
	crc.Write(out[:24])
	crc.Write(idx)
	binary.BigEndian.PutUint32(out[24:28], crc.Sum32())
	out = append(out, idx...)
	return append(out, data...), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func decodeGen(gen string) ([genBytes]byte, error) {
	var g [genBytes]byte
	b, err := hex.DecodeString(gen)
	if err != nil || len(b) != genBytes {
		return g, fmt.Errorf("ledger generation %q", gen)
	}
	copy(g[:], b)
	return g, nil
}

// errBadFrame: the bytes are not a whole frame (a torn tail, or not a frame).
var errBadFrame = errors.New("not a whole row frame")

// readFrame reads the header and index of the frame at off in r, of at
// most limit bytes (-1: unknown).
func readFrame(r io.ReaderAt, off, limit int64) (frameHead, []byte, error) {
	var hb [frameHeader]byte
	if _, err := r.ReadAt(hb[:], off); err != nil {
		return frameHead{}, nil, errBadFrame
	}
	return readFrameRest(hb, func(idx []byte) error {
		_, err := r.ReadAt(idx, off+frameHeader)
		return err
	}, limit)
}

func readFrameRest(hb [frameHeader]byte, readIndex func([]byte) error, limit int64) (frameHead, []byte, error) {
	if string(hb[:4]) != frameMagic {
		return frameHead{}, nil, errBadFrame
	}
	h := frameHead{
		gen:      hex.EncodeToString(hb[4:12]),
		id:       binary.BigEndian.Uint32(hb[12:16]),
		indexLen: int64(binary.BigEndian.Uint32(hb[16:20])),
		dataLen:  int64(binary.BigEndian.Uint32(hb[20:24])),
	}
	if h.indexLen > maxIndexBytes || (limit >= 0 && h.size() > limit) {
		return frameHead{}, nil, errBadFrame
	}
	idx := make([]byte, h.indexLen)
	if err := readIndex(idx); err != nil {
		return frameHead{}, nil, errBadFrame
	}
	crc := crc32.NewIEEE()
	crc.Write(hb[:24])
	crc.Write(idx)
	if crc.Sum32() != binary.BigEndian.Uint32(hb[24:28]) {
		return frameHead{}, nil, errBadFrame
	}
	return h, idx, nil
}

// decodeIndex calls fn for each entry of an index.
func decodeIndex(idx []byte, fn func(frameEntry)) error {
	rd := bytes.NewReader(idx)
	str := func() (string, error) {
		n, err := binary.ReadUvarint(rd)
		if err != nil || n > uint64(rd.Len()) {
			return "", errBadFrame
		}
		b := make([]byte, n)
		_, _ = io.ReadFull(rd, b)
		return string(b), nil
	}
	for rd.Len() > 0 {
		var e frameEntry
		row, err := binary.ReadUvarint(rd)
		if err != nil {
			return errBadFrame
		}
		e.row = int(row)
		st, err1 := rd.ReadByte()
		kind, err2 := rd.ReadByte()
		if err1 != nil || err2 != nil {
			return errBadFrame
		}
		e.failed, e.kind = st == slotFailed, kind
		switch kind {
		case entryBlob:
			off, err1 := binary.ReadUvarint(rd)
			size, err2 := binary.ReadUvarint(rd)
			if err1 != nil || err2 != nil {
				return errBadFrame
			}
			e.off, e.size = int64(off), int64(size)
		case entrySolo:
			if e.name, err = str(); err != nil {
				return err
			}
		case entryNone:
		default:
			return errBadFrame
		}
		if e.failed {
			if e.err, err = str(); err != nil {
				return err
			}
		}
		fn(e)
	}
	return nil
}

// isPackObject says whether a key under rows/<token>/ holds frames (row
// files stored on their own are named after the row, never pack-*.bin).
func isPackObject(key string) bool {
	b := path.Base(key)
	return strings.HasPrefix(b, "pack-") && strings.HasSuffix(b, ".bin")
}

// walkFrames calls fn with the header, index and offset of every whole
// frame of the object key: all the frames of a segment a store can read at
// offsets, else the one frame of an object. It stops quietly at a torn
// tail.
func walkFrames(ctx context.Context, store storage.Store, key string, fn func(h frameHead, off int64, idx []byte) error) error {
	rc, err := store.Open(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return nil
		}
		return err
	}
	defer rc.Close()
	if f, size, ok, err := randomAccess(rc); err != nil {
		return fmt.Errorf("row pack %s: %w", key, err)
	} else if ok {
		for off := int64(0); off < size; {
			if err := ctx.Err(); err != nil {
				return err
			}
			h, idx, err := readFrame(f, off, size-off)
			if err != nil {
				return nil
			}
			if err := fn(h, off, idx); err != nil {
				return err
			}
			off += h.size()
		}
		return nil
	}
	var hb [frameHeader]byte
	if _, err := io.ReadFull(rc, hb[:]); err != nil {
		return nil
	}
	h, idx, err := readFrameRest(hb, func(idx []byte) error {
		_, err := io.ReadFull(rc, idx)
		return err
	}, -1)
	if err != nil {
		return nil
	}
	return fn(h, 0, idx)
}
