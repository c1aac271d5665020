package media

import (
	"context"
	"errors"
)

// TEMPORARY stub so other packages compile while the engine is written.
type engine struct{ pool *Pool }

type Pool struct{}

func (p *Pool) Status() []PortStatus { return nil }
func (p *Pool) Capacity() (int, int) { return 0, 0 }
func newEngine(cfg Config, onEvent func(Event)) (*Engine, error) {
	return &Engine{&engine{pool: &Pool{}}}, nil
}
func (e *engine) open(ctx context.Context, req SessionRequest) (*Answer, error) {
	return nil, errors.New("todo")
}
func (e *engine) trickle(id, f string) error           { return ErrSessionNotFound }
func (e *engine) restart(id, f string) (string, error) { return "", ErrSessionNotFound }
func (e *engine) closeSession(id, reason string) error { return ErrSessionNotFound }
func (e *engine) closeRoom(room, reason string) int    { return 0 }
func (e *engine) publishers(room string) []string      { return nil }
func (e *engine) live(id string) bool                  { return false }
func (e *engine) close() error                         { return nil }
