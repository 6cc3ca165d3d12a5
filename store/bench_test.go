package store

import (
	"testing"
)

// perSecond reports the benchmark's throughput under unit.
func perSecond(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// forEachBackendB runs bench against each backend, as a sub-benchmark named after it.
func forEachBackendB(b *testing.B, bench func(*testing.B, backend)) {
	for _, be := range []backend{sqliteBackend, postgresBackend} {
		b.Run(be.name, func(b *testing.B) { bench(b, be) })
	}
}

// BenchmarkAuditAppend appends audit records one after another; each is a durable commit.
func BenchmarkAuditAppend(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, be backend) {
		s, _ := newStore(b, be)
		r := sampleRecord(0)
		for b.Loop() {
			if _, err := s.AppendAudit(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
		perSecond(b, "appends/s")
	})
}

// BenchmarkAuditAppendParallel appends audit records from many goroutines, as the server does.
func BenchmarkAuditAppendParallel(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, be backend) {
		s, _ := newStore(b, be)
		r := sampleRecord(0)
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.AppendAudit(ctx, r); err != nil {
					b.Error(err)
					return
				}
			}
		})
		perSecond(b, "appends/s")
	})
}

// BenchmarkAuditAppendReplicas appends from two stores over one PostgreSQL database, as two
// servers do: their commits take turns on the chain's lock.
func BenchmarkAuditAppendReplicas(b *testing.B) {
	dsn := postgresBackend.newDSN(b)
	stores := []Store{openAt(b, dsn, masterKey(1)), openAt(b, dsn, masterKey(1))}
	for _, s := range stores {
		b.Cleanup(func() { s.Close() })
	}
	r := sampleRecord(0)
	b.SetParallelism(8)
	var n int
	var mu = make(chan struct{}, 1)
	b.RunParallel(func(pb *testing.PB) {
		mu <- struct{}{}
		s := stores[n%2]
		n++
		<-mu
		for pb.Next() {
			if _, err := s.AppendAudit(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	perSecond(b, "appends/s")
}

// BenchmarkKeyGet reads and decrypts the current version of a key: what every release costs
// the store, since servers read the key at each request rather than cache it.
func BenchmarkKeyGet(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, be backend) {
		s := benchKeyStore(b, be)
		for b.Loop() {
			k, _, err := s.Key(ctx, "default", Current)
			if err != nil {
				b.Fatal(err)
			}
			clear(k)
		}
		perSecond(b, "gets/s")
	})
}

// BenchmarkKeyGetParallel reads keys from many goroutines.
func BenchmarkKeyGetParallel(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, be backend) {
		s := benchKeyStore(b, be)
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k, _, err := s.Key(ctx, "default", Current)
				if err != nil {
					b.Error(err)
					return
				}
				clear(k)
			}
		})
		perSecond(b, "gets/s")
	})
}

func benchKeyStore(b *testing.B, be backend) Store {
	s, _ := newStore(b, be)
	for _, name := range []string{"default", "model", "data"} {
		if _, err := s.CreateKey(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.RotateKey(ctx, "default"); err != nil {
		b.Fatal(err)
	}
	return s
}
