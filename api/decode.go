package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxJSONBody caps JSON request bodies. The largest legitimate body is a
// CreateSessionRequest carrying a 64 KiB SDP offer plus metadata; 256 KiB
// leaves room for JSON escaping and stops a client from streaming forever.
const MaxJSONBody = 256 << 10

// MaxSDPBody caps SDP offers. A browser offer with several tracks and every
// codec is 5-15 KiB; 64 KiB is generous and keeps parsing cheap.
const MaxSDPBody = 64 << 10

// Media types of the WHIP/WHEP protocol (RFC 9725 §4.2, RFC 8840 §9).
const (
	SDPContentType     = "application/sdp"
	SDPFragContentType = "application/trickle-ice-sdpfrag"
	JSONContentType    = "application/json"
)

// DecodeJSON reads one JSON value from r's body into dst, with a size cap,
// unknown fields rejected and trailing data refused, then validates dst with
// v. Every failure is an *Error naming the field when there is one.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v *Validator, dst any) error {
	// A body of any other type, or none, is refused: browsers send
	// text/plain and form types cross-site without a CORS preflight, so
	// accepting them would let any web page run these routes with the
	// visitor's network position.
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != JSONContentType {
		if ct == "" {
			ct = "none"
		}
		return Errorf(http.StatusUnsupportedMediaType, "Content-Type must be %s (was %s)", JSONContentType, ct).
			WithHeader("Accept", JSONContentType)
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxJSONBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil && isTooLarge(err) {
			return jsonError(err)
		}
		return Errorf(http.StatusBadRequest, "body must hold a single JSON object")
	}
	return v.Struct(dst)
}

func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// jsonError translates encoding/json's errors into client messages.
func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, "body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, "body is truncated JSON")
	case errors.As(err, &syn):
		return Errorf(http.StatusBadRequest, "body is not valid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return Errorf(http.StatusBadRequest, "body must be a JSON object, not %s", typ.Value)
		}
		return Invalid(FieldError{Field: field, Message: fmt.Sprintf("must be %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)})
	case errors.As(err, &mbe):
		return Errorf(http.StatusRequestEntityTooLarge, "body exceeds %d bytes", mbe.Limit)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Invalid(FieldError{Field: name, Message: "is not a known field"})
	default:
		return Errorf(http.StatusBadRequest, "body is not valid JSON")
	}
}

// jsonKind names a Go kind the way a JSON user thinks of it.
func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

// ReadSDP reads an SDP offer body: Content-Type application/sdp (else 415
// with Accept-Post), at most MaxSDPBody bytes (else 413), not empty and
// starting with "v=0" (else 400). RFC 9725 §4.2: the offer is sent as
// application/sdp.
func ReadSDP(w http.ResponseWriter, r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != SDPContentType {
		if ct == "" {
			ct = "none"
		}
		return "", Errorf(http.StatusUnsupportedMediaType, "Content-Type must be %s, not %s", SDPContentType, ct).
			WithHeader("Accept-Post", SDPContentType)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSDPBody))
	if err != nil {
		if isTooLarge(err) {
			return "", Errorf(http.StatusRequestEntityTooLarge, "SDP offer exceeds %d bytes", MaxSDPBody)
		}
		return "", Errorf(http.StatusBadRequest, "reading SDP offer: %v", err)
	}
	body = bytes.TrimLeft(body, " \t\r\n")
	if len(body) == 0 {
		return "", Errorf(http.StatusBadRequest, "SDP offer is empty")
	}
	if !bytes.HasPrefix(body, []byte("v=0")) {
		return "", Errorf(http.StatusBadRequest, `SDP offer must start with "v=0"`)
	}
	return string(body), nil
}

// ReadFragment reads a trickle-ice-sdpfrag body (RFC 8840 §9): Content-Type
// application/trickle-ice-sdpfrag (else 415 with Accept-Patch), at most
// MaxSDPBody bytes.
func ReadFragment(w http.ResponseWriter, r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != SDPFragContentType {
		if ct == "" {
			ct = "none"
		}
		return "", Errorf(http.StatusUnsupportedMediaType, "Content-Type must be %s, not %s", SDPFragContentType, ct).
			WithHeader("Accept-Patch", SDPFragContentType)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSDPBody))
	if err != nil {
		if isTooLarge(err) {
			return "", Errorf(http.StatusRequestEntityTooLarge, "SDP fragment exceeds %d bytes", MaxSDPBody)
		}
		return "", Errorf(http.StatusBadRequest, "reading SDP fragment: %v", err)
	}
	return string(body), nil
}

// SDPAttr returns the value of the first line of an SDP (or SDP fragment)
// that starts with prefix, e.g. "a=ice-ufrag:"; "" when there is none.
func SDPAttr(sdp, prefix string) string {
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
