package trustfs

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ppml/ppml/internal/hostdir"
)

// dirNode is a folder: one of the tree, which serves its entries, or a folder of the host that
// an Unchecked entry lets in. Either kind may be backed by a host folder, whose other files,
// folders and symbolic links it serves unchecked.
type dirNode struct {
	gofs.Inode
	fsys   *fsys
	own    bool   // a folder of the tree
	tree   *tree  // its entries, for a folder of the tree
	host   string // the host folder, when backed
	backed bool

	entriesMu sync.Mutex // held while the node of an entry is made, on its first lookup
}

var (
	_ gofs.NodeLookuper  = (*dirNode)(nil)
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeReaddirer = (*dirNode)(nil)
)

// entry reports whether the tree has an entry, or a folder leading to entries, at name in d.
func (d *dirNode) entry(name string) bool {
	return d.tree != nil && d.tree.children[name] != nil
}

// entryNode returns the inode of the tree's entry name in d, made on its first lookup and kept
// for as long as the filesystem is mounted; nil if it serves nothing (an Unchecked entry that is
// not on the host).
func (d *dirNode) entryNode(ctx context.Context, name string) *gofs.Inode {
	d.entriesMu.Lock()
	defer d.entriesMu.Unlock()
	if ch := d.GetChild(name); ch != nil {
		return ch
	}
	ops, mode := d.fsys.node(d, name, d.tree.children[name])
	if ops == nil {
		return nil
	}
	ch := d.NewPersistentInode(ctx, ops, gofs.StableAttr{Mode: mode})
	d.AddChild(name, ch, false)
	return ch
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d.entry(name) {
		ch := d.entryNode(ctx, name)
		if ch == nil {
			return nil, syscall.ENOENT
		}
		var a fuse.AttrOut
		if errno := ch.Operations().(gofs.NodeGetattrer).Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
		out.Attr = a.Attr
		out.SetEntryTimeout(cacheTimeout)
		out.SetAttrTimeout(a.Timeout())
		return ch, 0
	}
	if !d.backed {
		return nil, syscall.ENOENT
	}
	host := hostdir.Join(d.host, name)
	var st syscall.Stat_t
	if err := d.fsys.root.Stat(host, &st); err != nil {
		return nil, d.fsys.hostErrno(host, "lookup", err)
	}
	mode := st.Mode & syscall.S_IFMT
	if ch := d.GetChild(name); ch != nil && ch.Mode() == mode {
		hostAttr(&st, &out.Attr)
		return ch, 0
	}
	ops, mode := unchecked(d.fsys, host, st.Mode)
	if ops == nil {
		return nil, syscall.ENOENT // only files, folders and symbolic links are served
	}
	hostAttr(&st, &out.Attr)
	return d.NewInode(ctx, ops, gofs.StableAttr{Mode: mode}), 0
}

// unchecked returns the node that serves the host file host, of mode (a stat's) unchecked, and
// its type; nil for what is not served: anything but files, folders and symbolic links.
func unchecked(s *fsys, host string, mode uint32) (gofs.InodeEmbedder, uint32) {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return &hostFile{fsys: s, host: host}, syscall.S_IFREG
	case syscall.S_IFDIR:
		return &dirNode{fsys: s, host: host, backed: true}, syscall.S_IFDIR
	case syscall.S_IFLNK:
		return &hostLink{fsys: s, host: host}, syscall.S_IFLNK
	}
	return nil, 0
}

// hostAttr fills out from st, a host file's status.
func hostAttr(st *syscall.Stat_t, out *fuse.Attr) {
	out.FromStat(st)
	out.Ino = 0 // go-fuse numbers the nodes
}

// ownAttr fills out with the status of a folder or file of the filesystem's own, of type mode:
// root's, readable by all, empty, as old as the mount.
func (s *fsys) ownAttr(mode uint32, out *fuse.Attr) {
	*out = fuse.Attr{Mode: mode | 0o444, Nlink: 1}
	if mode == syscall.S_IFDIR {
		out.Mode |= 0o111
		out.Nlink = 2
	}
	out.SetTimes(&s.mounted, &s.mounted, &s.mounted)
}

func (d *dirNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if d.own {
		out.SetTimeout(cacheTimeout)
	}
	if d.backed {
		var st syscall.Stat_t
		err := d.fsys.root.Stat(d.host, &st)
		if err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			hostAttr(&st, &out.Attr)
			return 0
		}
		if !d.own {
			if err != nil {
				return d.fsys.hostErrno(d.host, "stat", err)
			}
			return syscall.ENOENT // no longer a folder
		}
	}
	d.fsys.ownAttr(syscall.S_IFDIR, &out.Attr)
	if d.holdsCreatable() {
		// Options.Owner may create its Creatable entries here (the kernel checks that).
		out.Mode |= 0o200
		out.Uid, out.Gid = d.fsys.owner.UID, d.fsys.owner.GID
	}
	return 0
}

// holdsCreatable reports whether d is a folder of the tree with a Creatable entry.
func (d *dirNode) holdsCreatable() bool {
	if d.tree == nil {
		return false
	}
	for _, ch := range d.tree.children {
		if ch.entry != nil && ch.entry.Kind == Creatable {
			return true
		}
	}
	return false
}

func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var list []fuse.DirEntry
	if d.tree != nil {
		for name := range d.tree.children {
			if ch := d.entryNode(ctx, name); ch != nil {
				list = append(list, fuse.DirEntry{Name: name, Mode: ch.Mode()})
			}
		}
	}
	if d.backed {
		entries, err := d.fsys.root.ReadDir(d.host)
		if err != nil && !d.own {
			return nil, d.fsys.hostErrno(d.host, "readdir", err)
		}
		for _, e := range entries {
			if d.entry(e.Name()) {
				continue
			}
			var mode uint32
			switch t := e.Type(); {
			case t.IsRegular():
				mode = syscall.S_IFREG
			case t.IsDir():
				mode = syscall.S_IFDIR
			case t&fs.ModeSymlink != 0:
				mode = syscall.S_IFLNK
			default:
				continue
			}
			list = append(list, fuse.DirEntry{Name: e.Name(), Mode: mode})
		}
	}
	slices.SortFunc(list, func(a, b fuse.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return gofs.NewListDirStream(list), 0
}
