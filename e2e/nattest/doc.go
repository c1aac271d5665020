// Package nattest holds pinhole's NAT test: pinhole on a private host behind
// a router namespace that forwards public UDP ports to its local ports, and a
// Pion client in a third namespace that can reach only the public address.
// The package has no code outside its tests; see nat_test.go.
package nattest
