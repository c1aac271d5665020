package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// ProblemContentType is the media type of every error body (RFC 9457 §3).
const ProblemContentType = "application/problem+json"

// Problem type URIs. RFC 9457 §4.2 allows "about:blank" when the status
// code says everything; the others name a problem a client may act on.
const (
	TypeBlank      = "about:blank"
	TypeValidation = "urn:pinhole:problem:validation"
	TypePoolFull   = "urn:pinhole:problem:pool-full"
)

// FieldError names one invalid field of a request and what is wrong with it.
type FieldError struct {
	// Field is the JSON path of the field ("metadata[key]"), a query
	// parameter or a header name.
	Field   string `json:"field" example:"name"`
	Message string `json:"message" example:"must match ^[A-Za-z0-9._-]{1,64}$"`
}

// Problem is an RFC 9457 problem details object. Extension members that do
// not have a field here (a named limit, say) go into Extensions and are
// written at the top level of the JSON object.
type Problem struct {
	Type     string       `json:"type" example:"about:blank"`
	Title    string       `json:"title" example:"Bad Request"`
	Status   int          `json:"status" example:"400"`
	Detail   string       `json:"detail,omitempty" example:"body: unexpected end of JSON input"`
	Instance string       `json:"instance,omitempty" example:"/api/v1/rooms"`
	Errors   []FieldError `json:"errors,omitempty"`
	// Total and Leased are set on a 503 pool-full answer: how many UDP
	// ports exist and how many are leased.
	Total  *int `json:"total,omitempty"`
	Leased *int `json:"leased,omitempty"`
	// Extensions holds further extension members (RFC 9457 §3.2).
	Extensions map[string]any `json:"-"`
}

// MarshalJSON writes the known members and then the extension members at the
// same level, as RFC 9457 §3.2 asks. Extensions never override known members.
func (p Problem) MarshalJSON() ([]byte, error) {
	type plain Problem
	b, err := json.Marshal(plain(p))
	if err != nil || len(p.Extensions) == 0 {
		return b, err
	}
	m := make(map[string]any, len(p.Extensions)+8)
	for k, v := range p.Extensions {
		m[k] = v
	}
	var known map[string]json.RawMessage
	if err := json.Unmarshal(b, &known); err != nil {
		return nil, err
	}
	for k, v := range known {
		m[k] = v
	}
	return json.Marshal(m)
}

// Error is an error that knows how it is answered: the status, the message
// the client sees, and apart from it the internal cause that is only logged
// (the tailscale tsweb shape). Handlers return it, or a sentinel the single
// error writer maps to one.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Type is the problem type URI; "" means about:blank.
	Type string
	// Title overrides the status text as the problem title.
	Title string
	// Msg is the client-facing detail. Never put internal state here.
	Msg string
	// Fields lists invalid fields for validation problems.
	Fields []FieldError
	// Extensions are extra problem members (total, leased, limit...).
	Extensions map[string]any
	// Header holds headers to send with the answer (Retry-After,
	// WWW-Authenticate, Accept-Post...).
	Header http.Header
	// Err is the internal cause: logged for 5xx, never sent.
	Err error
}

// Error describes the error for logs: status, client message and cause.
func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// WithHeader sets a header sent with the answer and returns e.
func (e *Error) WithHeader(key, value string) *Error {
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header.Set(key, value)
	return e
}

// Errorf returns an *Error with a client-facing detail.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Internal wraps an internal failure as a 500 whose detail never reaches
// the client.
func Internal(err error) *Error {
	return &Error{Status: http.StatusInternalServerError, Msg: "internal error", Err: err}
}

// Invalid returns a 400 validation problem naming the fields.
func Invalid(fields ...FieldError) *Error {
	msg := "request is invalid"
	if len(fields) == 1 {
		msg = fields[0].Field + ": " + fields[0].Message
	} else if len(fields) > 1 {
		msg = fmt.Sprintf("%d fields are invalid", len(fields))
	}
	return &Error{Status: http.StatusBadRequest, Type: TypeValidation, Msg: msg, Fields: fields}
}

// AsError returns err as an *Error when it is or wraps one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Problem builds the problem details object for e, with instance set to the
// request path.
func (e *Error) Problem(instance string) Problem {
	p := Problem{
		Type:       e.Type,
		Title:      e.Title,
		Status:     e.Status,
		Detail:     e.Msg,
		Instance:   instance,
		Errors:     e.Fields,
		Extensions: e.Extensions,
	}
	if p.Type == "" {
		p.Type = TypeBlank
	}
	if p.Title == "" {
		p.Title = http.StatusText(e.Status)
	}
	if v, ok := e.Extensions["total"].(int); ok {
		p.Total = &v
	}
	if v, ok := e.Extensions["leased"].(int); ok {
		p.Leased = &v
	}
	return p
}

// WriteProblem writes e as application/problem+json, with its headers.
func WriteProblem(w http.ResponseWriter, r *http.Request, e *Error) {
	h := w.Header()
	for k, vs := range e.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	h.Del("ETag")
	h.Del("Location")
	w.WriteHeader(e.Status)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(e.Problem(r.URL.Path))
}

// WriteJSON answers v as JSON with status. Answers are never cached: they
// describe live sessions.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
