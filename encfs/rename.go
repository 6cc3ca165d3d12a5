package encfs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/hostdir"
	"github.com/ppml/ppml/pf"
)

var _ gofs.NodeRenamer = (*dirNode)(nil)

// Rename moves the host file or folder and rebinds the protected files it moves to their new
// paths, as Gramine does. A file is checked before it moves: one that does not open (not a
// protected file, another key or path, damaged metadata) stays where it is and the rename is
// EIO. Files in a moved folder that do not open keep their old binding and are logged.
func (d *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	s := d.fsys
	if s.ro {
		return syscall.EROFS
	}
	if flags&^unix.RENAME_NOREPLACE != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE and RENAME_WHITEOUT are not supported
	}
	if isTemp(newName) {
		return syscall.EPERM
	}
	np := newParent.(*dirNode)
	if np.hidden(newName) {
		return syscall.EACCES
	}
	s.ns.Lock()
	defer s.ns.Unlock()
	fromRel, errno := d.child(name)
	if errno != 0 {
		return errno
	}
	toRel, errno := np.child(newName)
	if errno != 0 {
		return errno
	}
	var st syscall.Stat_t
	if err := s.root.Stat(fromRel, &st); err != nil {
		return s.hostErrno(fromRel, "rename", err)
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		if err := s.root.Rename(fromRel, toRel, uint(flags)); err != nil {
			return s.hostErrno(fromRel, "rename", err)
		}
		s.rebindTree(d.GetChild(name), fromRel, toRel)
		return 0
	}

	p, hf, err := s.openBound(fromRel, s.boundPath(fromRel))
	if err != nil {
		return s.errno(s.root.Name(fromRel), "rename", err)
	}
	moved, _ := d.childFile(name)
	replaced, _ := np.childFile(newName)
	if err := s.root.Rename(fromRel, toRel, uint(flags)); err != nil {
		p.Close()
		hf.Close()
		return s.hostErrno(fromRel, "rename", err)
	}
	if replaced != nil && replaced != moved {
		replaced.removed(hostdir.Dir(toRel))
	}
	if moved != nil {
		if err := moved.moved(hostdir.Dir(fromRel), hostdir.Dir(toRel)); err != nil {
			s.log.Error("encfs: cannot move a temporary file", "file", s.root.Name(toRel), "err", err)
		}
	}
	if err := s.rebind(moved, p, hf, s.boundPath(toRel)); err != nil {
		return s.errno(s.root.Name(toRel), "rename", err)
	}
	return 0
}

// openBound opens the protected file at rel, bound to the path bound, for writing.
func (s *fsys) openBound(rel, bound string) (*pf.File, *os.File, error) {
	hf, err := s.root.OpenFile(rel, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	info, err := hf.Stat()
	if err == nil {
		var p *pf.File
		p, err = pf.Open(hf, info.Size(), s.kdk(), &pf.Options{CheckPath: true, Path: bound})
		if err == nil {
			return p, hf, nil
		}
	}
	hf.Close()
	return nil, nil, err
}

// rebind binds p, opened over hf, to the path to, makes that durable and closes both. Only the
// metadata node is rewritten. n is the file's node, or nil if the kernel does not know it; an
// open file there takes the new header as seen (see openFile.rebound).
func (s *fsys) rebind(n *fileNode, p *pf.File, hf *os.File, to string) error {
	was := p.Header()
	err := p.SetPath(to)
	if err == nil {
		err = p.Flush()
	}
	if err == nil {
		err = hf.Sync()
	}
	if err == nil && n != nil {
		n.rebound(hf, was, p.Header(), to)
	}
	p.Close()
	hf.Close()
	return err
}

// rebindTree rebinds every protected file under the folder dirRel, just moved there from
// fromRel; dir is its node, or nil if the kernel does not know it. Temporary copies are left
// alone: their files rebind them when they commit.
func (s *fsys) rebindTree(dir *gofs.Inode, fromRel, dirRel string) {
	entries, err := s.root.ReadDir(dirRel)
	if err != nil {
		s.log.Error("encfs: cannot rebind the files of a moved folder", "file", s.root.Name(dirRel), "err", err)
		return
	}
	for _, e := range entries {
		from, rel := fromRel+"/"+e.Name(), dirRel+"/"+e.Name()
		var ch *gofs.Inode
		if dir != nil {
			ch = dir.GetChild(e.Name())
		}
		switch {
		case e.IsDir():
			s.rebindTree(ch, from, rel)
		case e.Type().IsRegular() && !isTemp(e.Name()):
			var n *fileNode
			if ch != nil {
				n, _ = ch.Operations().(*fileNode)
			}
			p, hf, err := s.openBound(rel, s.boundPath(from))
			if err == nil {
				err = s.rebind(n, p, hf, s.boundPath(rel))
			}
			if err != nil {
				s.log.Error("encfs: cannot rebind a moved file", "file", s.root.Name(rel), "err", err)
			}
		}
	}
}
