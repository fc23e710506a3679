"""calcjax: finite differences against autodiff in JAX -- how accurate, how fast, on your hardware."""

from calcjax._compare import compare
from calcjax._complex_safety import check_complex_step, complex_step_culprits
from calcjax._descent import DescentResult, gradient_descent
from calcjax._finite_diff import (
    DomainWarning,
    Estimate,
    Stencil,
    auto_batch_size,
    complex_step_derivative,
    complex_step_gradient,
    default_step,
    derivative,
    directional_derivative,
    gradient,
    richardson_derivative,
    richardson_gradient,
    stencil,
)
from calcjax._methods import METHODS, GradientMethod, get_method, register
from calcjax._problems import PROBLEMS, Instance, Problem, get_problem

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "PROBLEMS",
    "DescentResult",
    "DomainWarning",
    "Estimate",
    "GradientMethod",
    "Instance",
    "Problem",
    "Stencil",
    "__version__",
    "auto_batch_size",
    "check_complex_step",
    "compare",
    "complex_step_culprits",
    "complex_step_derivative",
    "complex_step_gradient",
    "default_step",
    "derivative",
    "directional_derivative",
    "get_method",
    "get_problem",
    "gradient",
    "gradient_descent",
    "register",
    "richardson_derivative",
    "richardson_gradient",
    "stencil",
]
