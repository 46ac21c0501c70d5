package train

import "math"

// LRSchedule returns the learning rate for a 0-based step.
type LRSchedule func(step int) float64

// StepLR multiplies base by gamma every `every` steps (the prototypical-networks paper: halve every 2,000).
func StepLR(base, gamma float64, every int) LRSchedule {
	return func(step int) float64 {
		if every <= 0 {
			return base
		}
		return base * math.Pow(gamma, float64(step/every))
	}
}

// CosineLR warms up linearly from 0 over warmup steps, then follows a cosine from base down to min
// at total steps.
func CosineLR(base, min float64, warmup, total int) LRSchedule {
	return func(step int) float64 {
		if warmup > 0 && step < warmup {
			return base * float64(step+1) / float64(warmup)
		}
		if total <= warmup {
			return base
		}
		p := float64(step-warmup) / float64(total-warmup)
		if p > 1 {
			p = 1
		}
		return min + (base-min)*0.5*(1+math.Cos(math.Pi*p))
	}
}

// withWarmup ramps linearly to base over the first warmup steps, then follows s.
func withWarmup(s LRSchedule, base float64, warmup int) LRSchedule {
	if warmup <= 0 {
		return s
	}
	return func(step int) float64 {
		if step < warmup {
			return base * float64(step+1) / float64(warmup)
		}
		return s(step)
	}
}
