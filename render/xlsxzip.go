package render

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"sync"
)

// partZip writes the small ZIP an XLSX file is (APPNOTE.TXT 4.3): a few
// entries, stored or deflated, each name ASCII, nothing near 4 GiB. It
// replaces archive/zip on the row path, whose writer allocated some sixty
// times a file (a buffered writer, headers, names as bytes) for what is a
// fixed layout here. Sizes past 32 bits are refused rather than written
// as Zip64: no row's workbook comes near them.
type partZip struct {
	w       io.Writer
	off     int64
	central []byte // the central directory, built as entries end
	entries int
	date    uint16 // MS-DOS date and time of every entry
	time    uint16
	err     error
}

const (
	zipLocalSig   = 0x04034b50
	zipCentralSig = 0x02014b50
	zipDescSig    = 0x08074b50
	zipEndSig     = 0x06054b50
	zipVersion    = 20 // version needed to extract: Deflate
	zipFlagDesc   = 0x8
	zipStore      = 0
	zipDeflate    = 8
	zipMax32      = 0xFFFFFFFF
)

var errZipTooBig = errors.New("xlsx part over 4 GiB")

var partZips = sync.Pool{New: func() any { return &partZip{central: make([]byte, 0, 1024)} }}

func newPartZip(w io.Writer, date, time uint16) *partZip {
	z := partZips.Get().(*partZip)
	*z = partZip{w: w, central: z.central[:0], date: date, time: time}
	return z
}

// release returns z to the pool; z is not used again.
func (z *partZip) release() {
	z.w = nil
	partZips.Put(z)
}

func (z *partZip) write(b []byte) {
	if z.err != nil {
		return
	}
	n, err := z.w.Write(b)
	z.off += int64(n)
	z.err = err
}

// header appends a local (central false) or central header's fixed part.
func (z *partZip) header(b []byte, central bool, name string, method, flags uint16, crc uint32, csize, usize, offset int64) []byte {
	le := binary.LittleEndian
	if central {
		b = le.AppendUint32(b, zipCentralSig)
		b = le.AppendUint16(b, zipVersion) // made by: MS-DOS attributes
	} else {
		b = le.AppendUint32(b, zipLocalSig)
	}
	b = le.AppendUint16(b, zipVersion)
	b = le.AppendUint16(b, flags)
	b = le.AppendUint16(b, method)
	b = le.AppendUint16(b, z.time)
	b = le.AppendUint16(b, z.date)
	b = le.AppendUint32(b, crc)
	b = le.AppendUint32(b, uint32(csize))
	b = le.AppendUint32(b, uint32(usize))
	b = le.AppendUint16(b, uint16(len(name)))
	b = le.AppendUint16(b, 0) // extra
	if central {
		b = le.AppendUint16(b, 0) // comment
		b = le.AppendUint16(b, 0) // disk
		b = le.AppendUint16(b, 0) // internal attributes
		b = le.AppendUint32(b, 0) // external attributes
		b = le.AppendUint32(b, uint32(offset))
	}
	return append(b, name...)
}

// entry writes a whole entry whose content (data, compressed by method) and
// sizes are known.
func (z *partZip) entry(name string, method uint16, crc uint32, data []byte, usize int64) {
	if z.off+int64(len(data)) >= zipMax32 || usize >= zipMax32 {
		z.err = errZipTooBig
	}
	var hb [64]byte
	start := z.off
	z.write(z.header(hb[:0], false, name, method, 0, crc, int64(len(data)), usize, 0))
	z.write(data)
	z.central = z.header(z.central, true, name, method, 0, crc, int64(len(data)), usize, start)
	z.entries++
}

// deflated starts a deflated entry of unknown size: the returned writer
// takes its content, and close ends the entry with a data descriptor.
func (z *partZip) deflated(name string, fw *flate.Writer) *zipStream {
	var hb [64]byte
	s := &zipStream{z: z, name: name, start: z.off, fw: fw}
	z.write(z.header(hb[:0], false, name, zipDeflate, zipFlagDesc, 0, 0, 0, 0))
	s.dataAt = z.off
	fw.Reset(zipCounter{z})
	return s
}

// zipCounter is the archive's writer, counting what the compressor writes.
type zipCounter struct{ z *partZip }

func (c zipCounter) Write(b []byte) (int, error) {
	c.z.write(b)
	if c.z.err != nil {
		return 0, c.z.err
	}
	return len(b), nil
}

type zipStream struct {
	z      *partZip
	name   string
	start  int64
	dataAt int64
	fw     *flate.Writer
	crc    uint32
	size   int64
}

func (s *zipStream) Write(b []byte) (int, error) {
	s.crc = crc32.Update(s.crc, crc32.IEEETable, b)
	s.size += int64(len(b))
	return s.fw.Write(b)
}

func (s *zipStream) close() error {
	if err := s.fw.Close(); err != nil {
		return err
	}
	z := s.z
	csize := z.off - s.dataAt
	if z.off >= zipMax32 || s.size >= zipMax32 {
		return errZipTooBig
	}
	le := binary.LittleEndian
	var db [16]byte
	d := le.AppendUint32(db[:0], zipDescSig)
	d = le.AppendUint32(d, s.crc)
	d = le.AppendUint32(d, uint32(csize))
	d = le.AppendUint32(d, uint32(s.size))
	z.write(d)
	z.central = z.header(z.central, true, s.name, zipDeflate, zipFlagDesc, s.crc, csize, s.size, s.start)
	z.entries++
	return z.err
}

// close writes the central directory and the end record.
func (z *partZip) close() error {
	at := z.off
	z.write(z.central)
	if z.off >= zipMax32 {
		return errZipTooBig
	}
	le := binary.LittleEndian
	var eb [22]byte
	e := le.AppendUint32(eb[:0], zipEndSig)
	e = le.AppendUint16(e, 0)
	e = le.AppendUint16(e, 0)
	e = le.AppendUint16(e, uint16(z.entries))
	e = le.AppendUint16(e, uint16(z.entries))
	e = le.AppendUint32(e, uint32(len(z.central)))
	e = le.AppendUint32(e, uint32(at))
	e = le.AppendUint16(e, 0)
	z.write(e)
	return z.err
}

// bufferedCRC is the CRC-32 of b, for a stored entry.
func bufferedCRC(b *bytes.Buffer) uint32 { return crc32.ChecksumIEEE(b.Bytes()) }
