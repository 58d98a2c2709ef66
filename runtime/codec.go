package runtime

import (
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Codec turns an item key of type K into the string that names it in Redis,
// after checking it. Generated packages pick one of [StringCodec],
// [Int64Codec] and [UUIDCodec] by the key type of their prefix.
type Codec[K any] interface {
	// Encode checks k and returns its Redis form, or an error that
	// matches ErrInvalidArgument.
	Encode(k K) (string, error)
	// Decode parses what Encode returned.
	Decode(s string) (K, error)
}

// StringCodec accepts non-empty, valid UTF-8 keys of at most MaxLen bytes
// without control characters.
type StringCodec struct {
	// MaxLen is the largest key length in bytes.
	MaxLen int
}

// Encode implements Codec.
func (c StringCodec) Encode(k string) (string, error) {
	switch {
	case k == "":
		return "", argError("item key is empty")
	case len(k) > c.MaxLen:
		return "", argError("item key is %d bytes long, over the limit of %d", len(k), c.MaxLen)
	}
	if err := checkText("item key", k); err != nil {
		return "", err
	}
	return k, nil
}

// Decode implements Codec.
func (c StringCodec) Decode(s string) (string, error) { return s, nil }

// Int64Codec accepts every int64 key.
type Int64Codec struct{}

// Encode implements Codec.
func (Int64Codec) Encode(k int64) (string, error) { return strconv.FormatInt(k, 10), nil }

// Decode implements Codec.
func (Int64Codec) Decode(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// UUIDCodec accepts every UUID but the nil UUID, which almost always means
// an id that was never set.
type UUIDCodec struct{}

// Encode implements Codec.
func (UUIDCodec) Encode(k uuid.UUID) (string, error) {
	if k == uuid.Nil {
		return "", argError("item key is the nil UUID")
	}
	return k.String(), nil
}

// Decode implements Codec.
func (UUIDCodec) Decode(s string) (uuid.UUID, error) { return uuid.Parse(s) }

// MaxOpKeyLen is the longest op key, in bytes.
const MaxOpKeyLen = 128

func checkOpKey(op string) error {
	switch {
	case op == "":
		return argError("op key is empty")
	case len(op) > MaxOpKeyLen:
		return argError("op key is %d bytes long, over the limit of %d", len(op), MaxOpKeyLen)
	}
	return checkText("op key", op)
}

// checkText rejects what PostgreSQL text cannot hold or a log cannot show.
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return argError("%s is not valid UTF-8", what)
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return argError("%s has a control character at byte %d", what, i)
		}
	}
	return nil
}
