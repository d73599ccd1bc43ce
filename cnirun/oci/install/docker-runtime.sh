#!/bin/sh
#% The Docker runtime's launcher, as `cnirun install docker-runtime` writes it
#% (cnirun.oci.install.docker_runtime.launcher_text). Lines starting with #% are
#% this note and are not written; @name@ is a value filled in at install (paths
#% shell-quoted); the lines between `#%{ name` and `#%}` are written only when the
#% install gives that section's directories (start: the gates; delete: the pins
#% and the locks).
# cnirun Docker runtime (written by `cnirun install docker-runtime`): runc plus
# cnirun's CNI attach. Only `create` needs Python (it attaches the container while
# runc creates it); a `start` waits for that attach, a `delete` starts the DEL in
# the background; every other runc call goes straight to runc.
for arg in "$@"; do
    case $arg in
    create)
        CNIRUN_SHIM_CONFIG=@settings@ CNIRUN_LAUNCHER=@launcher_version@
        export CNIRUN_SHIM_CONFIG CNIRUN_LAUNCHER
        exec @python@ -I -S -c @boot@ "$0" "$@" ;;
#%{ start
    start)
        # The shim's worker may still be attaching the container (cnirun.oci.start_gate).
        for id in "$@"; do :; done
        gate=@gates@/"$id"
        case $id in */*|.*|"") gate= ;; esac
        if [ -n "$gate" ] && [ -e "$gate" ]; then
            r=
            { @flock@ -s -w @wait_seconds@ 9 && IFS= read -r r <&9; } 9<"$gate" 2>/dev/null
            rm -f "$gate"
            if [ "$r" != ok ]; then
                printf 'cnirun: %s\n' "${r:-the network attach was killed before it finished: cnirun gc reclaims what it left}" >&2
                # runc's created container would wait for a start forever (its init in runc's exec
                # FIFO), and containerd refuses to delete a created task: its init is killed here,
                # and the failure said once containerd-shim has reaped it (the task is stopped
                # then), so the engine's cleanup of the failed start removes the container.
                root=/run/runc k= prev=
                for a do
                    shift
                    case $prev in --root) root=$a ;; esac
                    case $a in --root=*) root=${a#--root=} ;; esac
                    prev=$a
                    if [ -z "$k" ] && [ "$a" = start ]; then set -- "$@" kill; k=1; else set -- "$@" "$a"; fi
                done
                pid=$(sed -n 's/.*"init_process_pid":\([0-9][0-9]*\).*/\1/p' "$root/$id/state.json" 2>/dev/null)
                @runc@ "$@" KILL >/dev/null 2>&1
                n=0
                while [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ $n -lt 300 ]; do sleep 0.01; n=$((n + 1)); done
                sleep 0.05
                exit 1
            fi
        fi
        break ;;
#%}
#%{ delete
    delete)
        # DEL in the background, holding the container's lock before runc's delete
        # returns: a create of the same container (a restart) waits for it. When
        # someone else holds the lock (a live change, a create's worker), wait for
        # it here. containerd calls delete twice; the second finds runc's state
        # gone and the lock held by the first one's DEL, and leaves it alone. A
        # gate still there means the container never started (its create failed).
        root=/run/runc prev=
        for id in "$@"; do
            case $prev in --root) root=$id ;; esac
            case $id in --root=*) root=${id#--root=} ;; esac
            prev=$id
        done
        case $id in */*|.*|"") ;; *)
            unstarted=
            [ ! -e @gates@/"$id" ] || { unstarted=1; rm -f @gates@/"$id"; }
            if [ -e @pins@/"$id" ]; then
                [ -d @locks@ ] || mkdir -p @locks@
                { go=1
                  if ! @flock@ -n @lock_fd@; then
                      if [ -d "$root/$id" ] || [ -n "$unstarted" ]; then
                          @flock@ -w 30 @lock_fd@
                      else
                          go=
                      fi
                  fi
                  if [ -n "$go" ]; then
                      CNIRUN_SHIM_CONFIG=@settings@ @python@ -I -S -c @boot_delete@ "$id" </dev/null >/dev/null 2>&1 &
                  fi
                } @lock_fd@>>@locks@/"$id".lock
            fi ;;
        esac
        break ;;
#%}
    esac
done
exec @runc@ "$@"
