"""How time is handled: context windows and their fuse weights, noise rescheduling (FreeNoise), FreeInit's
frequency filter, and prompt maps. Small pure functions (indices and weights in, indices and weights
out, in the style of k-diffusion's samplers) that the pipeline composes; none loads a file or runs the
UNet."""
