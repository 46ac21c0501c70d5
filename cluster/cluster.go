// Package cluster reads a process's place in a distributed job from the environment that torchrun
// and Kubernetes set: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (torchrun, or a
// Kubernetes Job's manifest), and JOB_COMPLETION_INDEX (the pod's index in a Kubernetes Indexed
// Job), which stands for RANK when RANK is not set. With none of them set, a process runs alone.
package cluster

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultPort is the rendezvous port when MASTER_PORT is not set (torchrun's default).
const DefaultPort = 29500

// Role is a process's place in a job.
type Role struct {
	Rank, WorldSize, LocalRank int
	MasterAddr                 string
	MasterPort                 int
	// AgentStore: the launcher serves the rendezvous store itself (torchrun sets
	// TORCHELASTIC_USE_AGENT_STORE=True), so rank 0 must not start one.
	AgentStore bool
}

// Distributed reports whether the job has more than one process.
func (r Role) Distributed() bool { return r.WorldSize > 1 }

func (r Role) String() string {
	return fmt.Sprintf("rank %d of %d (local rank %d, master %s:%d)", r.Rank, r.WorldSize, r.LocalRank, r.MasterAddr, r.MasterPort)
}

// FromEnv returns the role described by the variables getenv (os.Getenv) returns: rank 0 of 1 when
// WORLD_SIZE is unset. An inconsistent or malformed environment is an error naming the variable.
func FromEnv(getenv func(string) string) (Role, error) {
	r := Role{WorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: DefaultPort}
	ws := getenv("WORLD_SIZE")
	if ws == "" {
		return r, nil
	}
	var err error
	num := func(name string, dst *int) {
		v := getenv(name)
		if v == "" || err != nil {
			return
		}
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 0 {
			err = fmt.Errorf("cluster: %s=%q is not a non-negative integer", name, v)
			return
		}
		*dst = n
	}
	rankVar := "RANK"
	if getenv("RANK") == "" {
		rankVar = "JOB_COMPLETION_INDEX"
	}
	num("WORLD_SIZE", &r.WorldSize)
	num(rankVar, &r.Rank)
	num("LOCAL_RANK", &r.LocalRank)
	num("MASTER_PORT", &r.MasterPort)
	if err != nil {
		return r, err
	}
	if a := getenv("MASTER_ADDR"); a != "" {
		r.MasterAddr = a
	}
	r.AgentStore = getenv("TORCHELASTIC_USE_AGENT_STORE") == "True"
	switch {
	case r.WorldSize < 1:
		return r, fmt.Errorf("cluster: WORLD_SIZE=%d: want at least 1", r.WorldSize)
	case r.WorldSize > 1 && getenv(rankVar) == "":
		return r, fmt.Errorf("cluster: WORLD_SIZE=%d but neither RANK nor JOB_COMPLETION_INDEX is set", r.WorldSize)
	case r.Rank >= r.WorldSize:
		return r, fmt.Errorf("cluster: %s=%d is not below WORLD_SIZE=%d", rankVar, r.Rank, r.WorldSize)
	case r.MasterPort < 1 || r.MasterPort > 65535:
		return r, fmt.Errorf("cluster: MASTER_PORT=%d is not a TCP port", r.MasterPort)
	}
	return r, nil
}

// Shard returns which of how many shards this process handles: RANK of WORLD_SIZE, else
// JOB_COMPLETION_INDEX of shards (--shards N, the Indexed Job's completions); 0 of 1 with neither.
// shards > 0 must agree with WORLD_SIZE when both are given.
func Shard(getenv func(string) string, shards int) (index, count int, err error) {
	if getenv("WORLD_SIZE") != "" {
		r, err := FromEnv(getenv)
		if err != nil {
			return 0, 1, err
		}
		if shards > 0 && shards != r.WorldSize {
			return 0, 1, fmt.Errorf("cluster: --shards %d disagrees with WORLD_SIZE=%d", shards, r.WorldSize)
		}
		return r.Rank, r.WorldSize, nil
	}
	v := getenv("JOB_COMPLETION_INDEX")
	if v == "" {
		return 0, max(shards, 1), nil
	}
	if shards < 1 {
		return 0, 1, fmt.Errorf("cluster: JOB_COMPLETION_INDEX=%s is set: give --shards (the Job's completions)", v)
	}
	i, perr := strconv.Atoi(v)
	if perr != nil || i < 0 || i >= shards {
		return 0, 1, fmt.Errorf("cluster: JOB_COMPLETION_INDEX=%q is not in 0..%d", v, shards-1)
	}
	return i, shards, nil
}

// ShardPath names shard index of count in path: "{shard}" in path becomes the index; without it,
// ".shard-<index>-of-<count>" goes before the extension. With one shard, path is unchanged.
func ShardPath(path string, index, count int) string {
	if count <= 1 {
		return path
	}
	if strings.Contains(path, "{shard}") {
		return strings.ReplaceAll(path, "{shard}", strconv.Itoa(index))
	}
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s.shard-%d-of-%d%s", strings.TrimSuffix(path, ext), index, count, ext)
}
