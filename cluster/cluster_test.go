package cluster

import (
	"strings"
	"testing"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestFromEnv(t *testing.T) {
	r, err := FromEnv(env())
	if err != nil || r.Distributed() || r.WorldSize != 1 || r.Rank != 0 {
		t.Fatalf("no environment: %+v, %v", r, err)
	}
	r, err = FromEnv(env("RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1", "MASTER_ADDR", "10.0.0.5", "MASTER_PORT", "29400", "TORCHELASTIC_USE_AGENT_STORE", "True"))
	if err != nil || !r.Distributed() || r.Rank != 1 || r.WorldSize != 2 || r.LocalRank != 1 || r.MasterAddr != "10.0.0.5" || r.MasterPort != 29400 || !r.AgentStore {
		t.Fatalf("torchrun: %+v, %v", r, err)
	}
	r, err = FromEnv(env("JOB_COMPLETION_INDEX", "3", "WORLD_SIZE", "4", "MASTER_ADDR", "train-0.train"))
	if err != nil || r.Rank != 3 || r.MasterPort != DefaultPort {
		t.Fatalf("indexed job: %+v, %v", r, err)
	}
	for _, bad := range []struct {
		env  func(string) string
		want string
	}{
		{env("WORLD_SIZE", "2"), "neither RANK"},
		{env("WORLD_SIZE", "two", "RANK", "0"), "WORLD_SIZE"},
		{env("WORLD_SIZE", "2", "RANK", "2"), "not below"},
		{env("WORLD_SIZE", "2", "RANK", "0", "MASTER_PORT", "70000"), "MASTER_PORT"},
		{env("WORLD_SIZE", "0", "RANK", "0"), "at least 1"},
	} {
		if _, err := FromEnv(bad.env); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("error %v, want one containing %q", err, bad.want)
		}
	}
}

func TestShard(t *testing.T) {
	for _, tc := range []struct {
		env        func(string) string
		shards     int
		index, cnt int
		err        string
	}{
		{env(), 0, 0, 1, ""},
		{env("RANK", "2", "WORLD_SIZE", "3"), 0, 2, 3, ""},
		{env("RANK", "2", "WORLD_SIZE", "3"), 4, 0, 1, "disagrees"},
		{env("JOB_COMPLETION_INDEX", "5"), 8, 5, 8, ""},
		{env("JOB_COMPLETION_INDEX", "5"), 0, 0, 1, "give --shards"},
		{env("JOB_COMPLETION_INDEX", "8"), 8, 0, 1, "not in 0..7"},
	} {
		i, n, err := Shard(tc.env, tc.shards)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("shards %d: error %v, want %q", tc.shards, err, tc.err)
			}
			continue
		}
		if err != nil || i != tc.index || n != tc.cnt {
			t.Errorf("shards %d: %d of %d, %v; want %d of %d", tc.shards, i, n, err, tc.index, tc.cnt)
		}
	}
}

func TestShardPath(t *testing.T) {
	for _, tc := range []struct {
		path     string
		index, n int
		want     string
	}{
		{"emb.safetensors", 0, 1, "emb.safetensors"},
		{"out/emb.safetensors", 2, 4, "out/emb.shard-2-of-4.safetensors"},
		{"out/emb-{shard}.safetensors", 3, 4, "out/emb-3.safetensors"},
	} {
		if got := ShardPath(tc.path, tc.index, tc.n); got != tc.want {
			t.Errorf("ShardPath(%q, %d, %d) = %q, want %q", tc.path, tc.index, tc.n, got, tc.want)
		}
	}
}
