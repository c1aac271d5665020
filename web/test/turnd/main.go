// Command turnd is a STUN/TURN server (pion/turn) for the diagnostics page's
// browser test: it listens on a loopback UDP address inside the test's
// network namespace, so Chromium's STUN and TURN checks have a real server
// to find. Not part of pinhole.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/pion/turn/v5"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3478", "UDP address to listen on (loopback only)")
	user := flag.String("user", "pinhole", "the one TURN username")
	pass := flag.String("pass", "secret", "its password")
	realm := flag.String("realm", "pinhole.test", "TURN realm")
	flag.Parse()

	pc, err := net.ListenPacket("udp4", *addr)
	if err != nil {
		log.Fatal(err)
	}
	ip := pc.LocalAddr().(*net.UDPAddr).IP
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: *realm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username != *user {
				return "", nil, false
			}
			return *user, turn.GenerateAuthKey(*user, ra.Realm, *pass), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: ip, Address: ip.String()},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("turnd listening on", pc.LocalAddr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	_ = srv.Close()
}
