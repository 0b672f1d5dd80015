package reportzip

import (
	"encoding/binary"
	"time"
)

// The ZIP records this package writes (APPNOTE.TXT 6.3.10, sections 4.3 and
// 4.5). Entries are streamed, so each local header carries zero sizes and
// flag bit 3, and a data descriptor follows the data; the central directory
// holds the real sizes, with a Zip64 extra field when a size or offset does
// not fit in 32 bits, and a Zip64 end record when the entry count, the
// directory size or its offset does not fit in the classic end record.
const (
	sigLocalHeader     = 0x04034b50
	sigDataDescriptor  = 0x08074b50
	sigCentralHeader   = 0x02014b50
	sigZip64End        = 0x06064b50
	sigZip64EndLocator = 0x07064b50
	sigEnd             = 0x06054b50

	localHeaderLen   = 30
	centralHeaderLen = 46
	zip64EndLen      = 56
	zip64LocatorLen  = 20
	endLen           = 22

	versionDeflate = 20 // version needed to extract: Deflate
	versionZip64   = 45 // version needed to extract: Zip64

	flagDataDescriptor = 0x8
	flagUTF8           = 0x800

	extraZip64     = 0x0001
	extraTimestamp = 0x5455 // "UT": extended timestamp, Unix seconds (Info-ZIP)

	max16 = 0xFFFF
	max32 = 0xFFFFFFFF
)

// entry is what the central directory needs of one written entry.
type entry struct {
	name         string
	method       uint16
	flags        uint16
	modTime      uint16
	modDate      uint16
	unix         uint32 // extended timestamp; valid when hasUnix
	hasUnix      bool
	crc          uint32
	compressed   uint64
	uncompressed uint64
	offset       uint64 // of the local header
}

func (e *entry) zip64() bool {
	return e.compressed >= max32 || e.uncompressed >= max32 || e.offset >= max32
}

// newEntry fills the name, method, flags and times of an entry. A zero
// modTime is stored as the ZIP epoch, 1980-01-01 00:00, with no extended
// timestamp.
func newEntry(name string, method uint16, modTime time.Time) entry {
	e := entry{name: name, method: method, flags: flagDataDescriptor, modDate: 1<<5 | 1}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			e.flags |= flagUTF8
			break
		}
	}
	if !modTime.IsZero() {
		e.modDate, e.modTime = msDosTime(modTime)
		if u := modTime.Unix(); u >= 0 && u <= max32 {
			e.unix, e.hasUnix = uint32(u), true
		}
	}
	return e
}

// msDosTime converts t, in its own location as archive/zip does, to MS-DOS
// date and time (2 s resolution), clamped to the years 1980-2107.
func msDosTime(t time.Time) (date, tm uint16) {
	y := min(max(t.Year(), 1980), 2107)
	date = uint16(t.Day() + int(t.Month())<<5 + (y-1980)<<9)
	tm = uint16(t.Second()/2 + t.Minute()<<5 + t.Hour()<<11)
	return date, tm
}

// appendTimestamp appends the extended timestamp extra field (mtime only).
func (e *entry) appendTimestamp(b []byte) []byte {
	if !e.hasUnix {
		return b
	}
	b = binary.LittleEndian.AppendUint16(b, extraTimestamp)
	b = binary.LittleEndian.AppendUint16(b, 5)
	b = append(b, 1) // flags: mtime present
	return binary.LittleEndian.AppendUint32(b, e.unix)
}

// appendLocalHeader appends the entry's local header with zero sizes: they
// follow in the data descriptor.
func (e *entry) appendLocalHeader(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, sigLocalHeader)
	b = binary.LittleEndian.AppendUint16(b, versionDeflate)
	b = binary.LittleEndian.AppendUint16(b, e.flags)
	b = binary.LittleEndian.AppendUint16(b, e.method)
	b = binary.LittleEndian.AppendUint16(b, e.modTime)
	b = binary.LittleEndian.AppendUint16(b, e.modDate)
	b = binary.LittleEndian.AppendUint32(b, 0) // crc-32
	b = binary.LittleEndian.AppendUint32(b, 0) // compressed size
	b = binary.LittleEndian.AppendUint32(b, 0) // uncompressed size
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.name)))
	b = binary.LittleEndian.AppendUint16(b, uint16(e.timestampLen()))
	b = append(b, e.name...)
	return e.appendTimestamp(b)
}

func (e *entry) timestampLen() int {
	if e.hasUnix {
		return 9
	}
	return 0
}

// appendDataDescriptor appends the descriptor that follows the data; its
// sizes are 8 bytes each when either does not fit in 4, as archive/zip
// writes and reads them.
func (e *entry) appendDataDescriptor(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, sigDataDescriptor)
	b = binary.LittleEndian.AppendUint32(b, e.crc)
	if e.compressed >= max32 || e.uncompressed >= max32 {
		b = binary.LittleEndian.AppendUint64(b, e.compressed)
		return binary.LittleEndian.AppendUint64(b, e.uncompressed)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(e.compressed))
	return binary.LittleEndian.AppendUint32(b, uint32(e.uncompressed))
}

// appendCentralHeader appends the entry's central directory header. When a
// size or the offset does not fit in 32 bits, all three are 0xFFFFFFFF and
// a Zip64 extra field holds them (uncompressed, compressed, offset).
func (e *entry) appendCentralHeader(b []byte) []byte {
	version := uint16(versionDeflate)
	compressed, uncompressed, offset := uint32(e.compressed), uint32(e.uncompressed), uint32(e.offset)
	extraLen := e.timestampLen()
	if e.zip64() {
		version = versionZip64
		compressed, uncompressed, offset = max32, max32, max32
		extraLen += 4 + 24
	}
	b = binary.LittleEndian.AppendUint32(b, sigCentralHeader)
	b = binary.LittleEndian.AppendUint16(b, version) // made by: MS-DOS attributes, as archive/zip by default
	b = binary.LittleEndian.AppendUint16(b, version) // needed to extract
	b = binary.LittleEndian.AppendUint16(b, e.flags)
	b = binary.LittleEndian.AppendUint16(b, e.method)
	b = binary.LittleEndian.AppendUint16(b, e.modTime)
	b = binary.LittleEndian.AppendUint16(b, e.modDate)
	b = binary.LittleEndian.AppendUint32(b, e.crc)
	b = binary.LittleEndian.AppendUint32(b, compressed)
	b = binary.LittleEndian.AppendUint32(b, uncompressed)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.name)))
	b = binary.LittleEndian.AppendUint16(b, uint16(extraLen))
	b = binary.LittleEndian.AppendUint16(b, 0) // comment length
	b = binary.LittleEndian.AppendUint16(b, 0) // disk number start
	b = binary.LittleEndian.AppendUint16(b, 0) // internal attributes
	b = binary.LittleEndian.AppendUint32(b, 0) // external attributes
	b = binary.LittleEndian.AppendUint32(b, offset)
	b = append(b, e.name...)
	if e.zip64() {
		b = binary.LittleEndian.AppendUint16(b, extraZip64)
		b = binary.LittleEndian.AppendUint16(b, 24)
		b = binary.LittleEndian.AppendUint64(b, e.uncompressed)
		b = binary.LittleEndian.AppendUint64(b, e.compressed)
		b = binary.LittleEndian.AppendUint64(b, e.offset)
	}
	return e.appendTimestamp(b)
}

// appendEnd appends the end of the archive: a Zip64 end record and its
// locator when needed (start is where they begin), then the classic end
// record, whose overflowing fields then read 0xFFFF or 0xFFFFFFFF.
func appendEnd(b []byte, records, dirSize, dirOffset, start uint64) []byte {
	if records >= max16 || dirSize >= max32 || dirOffset >= max32 {
		b = binary.LittleEndian.AppendUint32(b, sigZip64End)
		b = binary.LittleEndian.AppendUint64(b, zip64EndLen-12) // size of the rest of the record
		b = binary.LittleEndian.AppendUint16(b, versionZip64)   // made by
		b = binary.LittleEndian.AppendUint16(b, versionZip64)   // needed
		b = binary.LittleEndian.AppendUint32(b, 0)              // this disk
		b = binary.LittleEndian.AppendUint32(b, 0)              // disk of the directory
		b = binary.LittleEndian.AppendUint64(b, records)        // on this disk
		b = binary.LittleEndian.AppendUint64(b, records)        // in total
		b = binary.LittleEndian.AppendUint64(b, dirSize)
		b = binary.LittleEndian.AppendUint64(b, dirOffset)

		b = binary.LittleEndian.AppendUint32(b, sigZip64EndLocator)
		b = binary.LittleEndian.AppendUint32(b, 0) // disk of the Zip64 end record
		b = binary.LittleEndian.AppendUint64(b, start)
		b = binary.LittleEndian.AppendUint32(b, 1) // disks

		records, dirSize, dirOffset = min(records, max16), min(dirSize, max32), min(dirOffset, max32)
	}
	b = binary.LittleEndian.AppendUint32(b, sigEnd)
	b = binary.LittleEndian.AppendUint16(b, 0) // this disk
	b = binary.LittleEndian.AppendUint16(b, 0) // disk of the directory
	b = binary.LittleEndian.AppendUint16(b, uint16(records))
	b = binary.LittleEndian.AppendUint16(b, uint16(records))
	b = binary.LittleEndian.AppendUint32(b, uint32(dirSize))
	b = binary.LittleEndian.AppendUint32(b, uint32(dirOffset))
	return binary.LittleEndian.AppendUint16(b, 0) // comment length
}
