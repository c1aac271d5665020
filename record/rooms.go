package record

import (
	"context"
	"time"

	"github.com/pinhole-rtc/pinhole/store"
)

// CollectRooms deletes the rooms WHIP/WHEP made on the fly that have had
// no live session for idle (by the last update of any of their sessions,
// or the room's creation), so names squatted or left behind do not fill
// --max-rooms. Rooms an admin made are kept. It returns how many went.
func (s *Sessions) CollectRooms(ctx context.Context, idle time.Duration, now time.Time) (int, error) {
	rooms, err := s.Store.ListRooms(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, room := range rooms {
		if !room.AutoCreated {
			continue
		}
		all, err := s.Store.ListSessions(ctx, store.SessionFilter{Room: room.Name, IncludeClosed: true})
		if err != nil {
			return n, err
		}
		last, live := room.CreatedAt, false
		for _, sess := range all {
			live = live || sess.State != store.StateClosed
			if sess.UpdatedAt.After(last) {
				last = sess.UpdatedAt
			}
		}
		if live || now.Sub(last) < idle {
			continue
		}
		if err := s.Store.DeleteRoom(ctx, room.Name); err == nil {
			n++
		}
	}
	return n, nil
}
