package store

import (
	"testing"
)

// perSecond reports the benchmark's throughput under unit.
func perSecond(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkAuditAppend appends audit records one after another; each is a durable commit.
func BenchmarkAuditAppend(b *testing.B) {
	s, _ := newStore(b)
	r := sampleRecord(0)
	for b.Loop() {
		if _, err := s.AppendAudit(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	perSecond(b, "appends/s")
}

// BenchmarkAuditAppendParallel appends audit records from many goroutines, as the server does.
func BenchmarkAuditAppendParallel(b *testing.B) {
	s, _ := newStore(b)
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
}

// BenchmarkKeyGet reads and decrypts the current version of a key.
func BenchmarkKeyGet(b *testing.B) {
	s := benchKeyStore(b)
	for b.Loop() {
		k, err := s.Key(ctx, "default", Current)
		if err != nil {
			b.Fatal(err)
		}
		clear(k)
	}
	perSecond(b, "gets/s")
}

// BenchmarkKeyGetParallel reads keys from many goroutines.
func BenchmarkKeyGetParallel(b *testing.B) {
	s := benchKeyStore(b)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k, err := s.Key(ctx, "default", Current)
			if err != nil {
				b.Error(err)
				return
			}
			clear(k)
		}
	})
	perSecond(b, "gets/s")
}

func benchKeyStore(b *testing.B) Store {
	s, _ := newStore(b)
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
