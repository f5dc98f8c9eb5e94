"""Physics of the X-ray views: rays, the cone-beam projector (PyTorch, optional TIGRE),
analytic tube integrals, the visual hull and contrast attenuation."""
