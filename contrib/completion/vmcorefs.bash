# SPDX-License-Identifier: MIT
# bash completion for vmcorefs (static: no Python runs while you press Tab).
# Install: cp contrib/completion/vmcorefs.bash /usr/share/bash-completion/completions/vmcorefs
# or:      source contrib/completion/vmcorefs.bash
# tests/test_t7_cli.py checks that it knows every command and option.

_vmcorefs_sources() {
    # machine descriptions, dump files, "demo" and qmp:PATH (a running QEMU's QMP socket)
    if [[ $1 == qmp:* ]]; then
        COMPREPLY+=( $(compgen -f -P qmp: -- "${1#qmp:}") )
        compopt -o nospace 2>/dev/null
        declare -F __ltrim_colon_completions >/dev/null 2>&1 && __ltrim_colon_completions "$1"
        return
    fi
    COMPREPLY+=( $(compgen -W "demo qmp:" -- "$1") )
    compopt -o filenames 2>/dev/null
    COMPREPLY+=( $(compgen -f -- "$1") )
}

_vmcorefs() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion -n : || return  # qmp:PATH is one word
    else
        COMPREPLY=()
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local commands="mount demo umount unmount check info save emulate"
    local common="-h --help -v --verbose --debug"
    local cmd="" i nargs=0
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd=${words[i]}; fi ;;
        esac
    done

    case $prev in
        --mode) COMPREPLY=( $(compgen -W "auto kdump standalone" -- "$cur") ); return ;;
        --environment) COMPREPLY=( $(compgen -W "standalone kdump" -- "$cur") ); return ;;
        -o)
            if [[ $cmd == emulate ]]; then compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -f -- "$cur") )
            else COMPREPLY=( $(compgen -W "allow_other allow_root max_read= mode=auto mode=kdump mode=standalone log= live" -- "$cur") ); compopt -o nospace 2>/dev/null
            fi
            return ;;
        --log|--output|--cpus-json|--save-areas|--cpus-from-elf|--state|--sha256-file|--memory-map)
            compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
        --hsa-size|--sclp-latency-us|--memory|--cpu-prefix|--crashkernel|--chunk-size) return ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=( $(compgen -W "-h --help --version" -- "$cur") )
        else
            COMPREPLY=( $(compgen -W "$commands" -- "$cur") )
        fi
        return
    fi

    local opts=""
    case $cmd in
        mount|demo) opts="-f --foreground --mode -o --log --live" ;;
        umount|unmount) opts="-z --lazy" ;;
        check) opts="" ;;
        info) opts="--mode" ;;
        save) opts="--progress -q --quiet --sha256-file --force --restart --state --mode --verify --no-sparse --sync --no-sha256 --chunk-size" ;;
        emulate) opts="-o --output --environment --memory --memory-map --hsa-size --sclp-latency-us --cpus-json --save-areas --cpus-from-elf --cpu-prefix --vector --crashkernel" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=( $(compgen -W "$opts $common" -- "$cur") )
        return
    fi

    # which positional argument is this?
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --mode|--environment|-o|--log|--output|--cpus-json|--save-areas|--cpus-from-elf|--state|--hsa-size|--sclp-latency-us|--memory|--memory-map|--cpu-prefix|--crashkernel|--chunk-size) ((i++)) ;;
            -*) ;;
            *) ((nargs++)) ;;
        esac
    done
    # nargs counts the command itself
    case $cmd:$nargs in
        mount:1|check:1|info:1) _vmcorefs_sources "$cur" ;;
        mount:2|demo:1|umount:1|unmount:1)
            compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -d -- "$cur") ) ;;
        save:1)
            _vmcorefs_sources "$cur"
            COMPREPLY+=( $(compgen -W "/proc/vmcore" -- "$cur") ) ;;
        save:2|emulate:1)
            compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -f -- "$cur") ) ;;
    esac
}
complete -F _vmcorefs vmcorefs
