package diagnostics

// TakeProbeSlots takes every probe slot of d, as that many running probes
// would, and returns the function that gives them back.
func TakeProbeSlots(d *Diagnostics) (release func()) {
	for range maxConcurrentProbes {
		d.probes <- struct{}{}
	}
	return func() {
		for range maxConcurrentProbes {
			<-d.probes
		}
	}
}
