"""How iodinated contrast shows in an X-ray: the attenuation shared by simulation and XA input."""

#: Apparent attenuation of contrast-filled lumen per mm (I = I0 exp(-mu L)): the simulator's
#: Poisson model and synthetic XA runs use it, and XA input divides -log intensity by it
#: to get line-integral proxies in mm (``--mu`` calibrates it for real runs).
CONTRAST_MU_PER_MM = 0.1
