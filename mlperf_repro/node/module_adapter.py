"""What every module in ``library/`` does around its one call into ``node/``: a failure is
reported as the module's failure, with a message in words, never a traceback or a bare
"Module failed".

Standard library only, no Ansible import: ``module`` is the AnsibleModule the adapter built
(only its ``warn``, ``fail_json`` and ``exit_json`` are used). Shipped to nodes as
``ansible.module_utils.module_adapter``.

A node function reports a refusal by raising one of the ``errors`` the adapter names; such an
error may carry ``result`` (a dict returned with the failure) and ``warnings`` (sentences said
first). A node function's result may hold ``warnings`` too; they are said, not returned.
"""

try:
    from ansible.module_utils.fileio import os_error_text
except ImportError:  # the controller and tests
    from mlperf_repro.node.fileio import os_error_text


def call(module, name, errors, function, /, *args, **kwargs):
    """``function(*args, **kwargs)``'s result (a dict), its warnings said; any failure ends the
    module ``name``: one of ``errors`` (a tuple of exception classes) with its message (and ``result``), an OSError with the file it
    names, anything else as ``NAME failed unexpectedly: ...`` (no internal type names)."""
    try:
        result = function(*args, **kwargs)
    except tuple(errors) as exc:
        for warning in getattr(exc, "warnings", None) or ():
            module.warn(warning)
        module.fail_json(msg=str(exc), **(getattr(exc, "result", None) or {}))
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (name, os_error_text(exc)))
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg="%s failed unexpectedly: %s (%s)"
                             % (name, exc, type(exc).__name__.lstrip("_")))
    if isinstance(result, dict):
        for warning in result.pop("warnings", None) or ():
            module.warn(warning)
    return result


def finish(module, name, errors, function, /, *args, **kwargs):
    """:func:`call`, then ``module.exit_json`` with its result."""
    module.exit_json(**call(module, name, errors, function, *args, **kwargs))
