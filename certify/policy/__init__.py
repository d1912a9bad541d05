"""What we decide: profiles, waivers, baselines, the verdict and the signed certificate."""
