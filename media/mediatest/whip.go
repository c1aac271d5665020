package mediatest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Offerer is a client that negotiates by offer and answer: *Publisher and
// *Viewer.
type Offerer interface {
	Offer(ctx context.Context) (string, error)
	SetAnswer(sdp string) error
}

// Resource is the session a WHIP or WHEP POST created.
type Resource struct {
	// URL is the Location header resolved against the endpoint.
	URL string
	// ETag is the resource's entity tag, as sent (quoted).
	ETag string
	// Answer is the SDP answer the server returned.
	Answer string
	// Header holds every response header (Link, Content-Type...).
	Header http.Header
}

// HTTPError is a non-2xx answer, with the body (problem+json for pinhole)
// kept so a test can print or decode it.
type HTTPError struct {
	StatusCode  int
	ContentType string
	Header      http.Header
	Body        string
}

// Error reports the status and the body.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("mediatest: HTTP %d (%s): %s", e.StatusCode, e.ContentType, e.Body)
}

// maxBody caps what is read of a response: an SDP answer is a few KB.
const maxBody = 1 << 20

// Negotiate performs the WHIP/WHEP exchange (RFC 9725 section 4.2): POST the
// peer's complete offer as application/sdp to endpoint (with header added,
// e.g. Authorization), expect 201 with Location, and apply the answer.
// A non-201 answer is returned as *HTTPError.
func Negotiate(ctx context.Context, hc *http.Client, endpoint string, peer Offerer, header http.Header) (*Resource, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	offer, err := peer.Offer(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, &HTTPError{StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Header: resp.Header, Body: string(body)}
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("mediatest: 201 without Location")
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("mediatest: bad Location %q: %w", loc, err)
	}
	r := &Resource{
		URL:    base.ResolveReference(ref).String(),
		ETag:   resp.Header.Get("ETag"),
		Answer: string(body),
		Header: resp.Header,
	}
	if err := peer.SetAnswer(r.Answer); err != nil {
		return r, err
	}
	return r, nil
}

// Delete ends the session (RFC 9725 section 4.2: DELETE on the resource)
// and returns the status code.
func (r *Resource) Delete(ctx context.Context, hc *http.Client) (int, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, r.URL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
